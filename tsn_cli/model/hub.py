"""Weights by name or URL: a table of known checkpoints, a download cache, and verification before use.

No paddle here. A ``--weights``/``--pretrained`` value is a local path (tried first: an existing file or folder
always wins), an ``http(s)://`` URL, or a name from :func:`known_weights` (``resnet50``, ``tsn_k400``, ...).
Remote files are cached at ``$TSN_CACHE/<host>/<path of the URL>`` (default ``~/.cache/tsn``); for a name the
path comes from its canonical URL, so a mirror (``$TSN_WEIGHTS_MIRROR``) fills the same cache file.

A download goes to ``<file>.part`` (continued with an HTTP Range request when a previous one broke off; a server
that ignores Range sends the whole file again and the part is restarted), is renamed into place only when its
size matches Content-Length, and only after it loaded through the safe loader and matched the expected
architecture tensor by tensor (the named one; for a bare URL, the one its tensors describe). A file that fails
is deleted: a resume could only rebuild the same bad bytes. Its sha256 is then recorded beside it
(``<file>.sha256``) and checked every later use, so a cache file that changed is never used silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Optional

from tsn_cli.errors import CheckpointError, ConfigError, TsnError, first_line

ENV_CACHE = "TSN_CACHE"
ENV_MIRROR = "TSN_WEIGHTS_MIRROR"
ENV_TABLE = "TSN_WEIGHTS_TABLE"
_CHUNK = 1 << 20
_ATTEMPTS = 3  # a connection that drops mid-file is continued this many times in one run
_TIMEOUT = 60.0


class DownloadError(TsnError):
    """A file could not be fetched (offline, HTTP error, dropped connection). Exit code 2: the fix is the user's."""


@dataclass(frozen=True)
class Known:
    """One named checkpoint and the architecture it must have (``num_classes=None``: backbone only)."""

    name: str
    url: str
    depth: int
    num_classes: Optional[int]
    seg_num: Optional[int] = None
    sha256: Optional[str] = None
    about: str = ""

    def describe(self) -> str:
        """'TSN ResNet-50, 400 classes, 3 segments' or 'ResNet-50 backbone (no head)'."""
        if self.num_classes is None:
            return f"ResNet-{self.depth} backbone (no head)"
        seg = f", {self.seg_num} segments" if self.seg_num else ""
        return f"TSN ResNet-{self.depth}, {self.num_classes} classes{seg}"


# PaddleVideo's published files. No checksums: they could not be computed where this table was written (offline);
# the first download records one and every later use checks it, and --sha256 pins one.
BUILTIN = {
    k.name: k
    for k in (
        Known(
            "resnet50",
            "https://videotag.bj.bcebos.com/PaddleVideo/PretrainModel/ResNet50_pretrain.pdparams",
            50,
            None,
            about="ImageNet ResNet-50 backbone (PaddleVideo's TSN init): for tsn train --pretrained",
        ),
        Known(
            "tsn_k400",
            "https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TSN_k400.pdparams",
            50,
            400,
            3,
            about="TSN trained on Kinetics-400 with 3 segments (PaddleVideo 2.2)",
        ),
        Known(
            "tsn_k400_8",
            "https://videotag.bj.bcebos.com/PaddleVideo-release2.2/TSN_k400_8.pdparams",
            50,
            400,
            8,
            about="TSN trained on Kinetics-400 with 8 segments (PaddleVideo 2.2)",
        ),
    )
}


def _user_table(path: Path) -> dict[str, Known]:
    """Entries of a ``$TSN_WEIGHTS_TABLE`` JSON file.

    Format: ``{name: {url, depth, num_classes[, seg_num, sha256, about]}}``."""
    where = f"{ENV_TABLE}={path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object {{name: {{url, depth, num_classes}}}}")
    out = {}
    allowed = {"url", "depth", "num_classes", "seg_num", "sha256", "about"}
    for name, e in data.items():
        if not isinstance(e, dict) or not {"url", "depth", "num_classes"} <= set(e) or set(e) - allowed:
            raise ConfigError(
                f"{where}: entry {name!r} needs url, depth, num_classes (optional: seg_num, sha256, about)"
            )
        if not is_url(str(e["url"])) or e["depth"] not in (18, 34, 50, 101, 152):
            raise ConfigError(f"{where}: entry {name!r}: url must be http(s)://..., depth one of 18/34/50/101/152")
        for key in ("num_classes", "seg_num"):
            if e.get(key) is not None and (not isinstance(e[key], int) or e[key] < 1):
                raise ConfigError(f"{where}: entry {name!r}: {key} must be a positive integer or null")
        sha = e.get("sha256")
        if sha is not None and not _HEX64.match(str(sha)):
            raise ConfigError(f"{where}: entry {name!r}: sha256 must be 64 hex digits")
        out[name] = Known(
            name,
            str(e["url"]),
            int(e["depth"]),
            None if e["num_classes"] is None else int(e["num_classes"]),
            e.get("seg_num"),
            sha.lower() if sha else None,
            str(e.get("about", "")),
        )
    return out


def known_weights() -> dict[str, Known]:
    """The built-in table plus (overriding it) the entries of the JSON file ``$TSN_WEIGHTS_TABLE`` names."""
    table = dict(BUILTIN)
    extra = os.environ.get(ENV_TABLE)
    if extra:
        table.update(_user_table(Path(extra)))
    return table


# ----------------------------------------------------------------------------------------- where things are
def is_url(value: str) -> bool:
    """True for ``http://`` and ``https://`` values."""
    return value.lower().startswith(("http://", "https://"))


def cache_dir() -> Path:
    """``$TSN_CACHE`` or ``~/.cache/tsn``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tsn"


def cache_path(url: str) -> Path:
    """Where the file at `url` is cached: ``<cache>/<host[_port]>/<url path>`` (a query adds a hash)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "host") + (f"_{parts.port}" if parts.port else "")
    segs = [s for s in urllib.parse.unquote(parts.path).split("/") if s not in ("", ".", "..")]
    segs = [re.sub(r"[^A-Za-z0-9._+-]", "_", s) for s in segs] or ["index"]
    if parts.query:
        segs[-1] += "-" + hashlib.sha256(parts.query.encode()).hexdigest()[:10]
    return cache_dir().joinpath(host, *segs)


def url_for(entry: Known) -> str:
    """The URL to download a named entry from: ``$TSN_WEIGHTS_MIRROR`` replaces everything up to the file name."""
    mirror = os.environ.get(ENV_MIRROR)
    if not mirror:
        return entry.url
    return mirror.rstrip("/") + "/" + entry.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Remote:
    """A value that names a remote file: where it comes from and where it is cached."""

    value: str
    url: str
    cache: Path
    entry: Optional[Known]  # the named architecture; None for a bare URL (its tensors say what it is)


def remote_source(value: str) -> Optional[Remote]:
    """The remote file `value` means, or None when it is a local path (an existing path always wins)."""
    if is_url(value):
        return Remote(value, value, cache_path(value), None)
    if Path(value).exists():
        return None
    entry = known_weights().get(value)
    if entry is None:
        return None
    return Remote(value, url_for(entry), cache_path(entry.url), entry)


def unknown_hint(value: str) -> str:
    """' (not a file, a URL or a known name: resnet50, tsn_k400, ...)' for a value that looks like a name."""
    if "/" in value or "\\" in value or "." in value:
        return ""
    return f" (not a file, nor a known weights name: {', '.join(known_weights())}; or give an http(s):// URL)"


# ----------------------------------------------------------------------------------------- checksums
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def check_hex(value: Optional[str], flag: str = "--sha256") -> Optional[str]:
    """`value` lower-cased when it is 64 hex digits; ConfigError otherwise; None passes."""
    if value is None:
        return None
    if not _HEX64.match(value.strip()):
        raise ConfigError(f"{flag}: expected 64 hex digits (sha256sum prints them), got {value!r}")
    return value.strip().lower()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_sha(path: Path) -> Optional[str]:
    """The sha256 recorded beside a cached file (``<file>.sha256``, sha256sum format), or None."""
    try:
        text = _sidecar(path).read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    return text[0].lower() if text and _HEX64.match(text[0]) else None


def _record_sha(path: Path, digest: str) -> None:
    from tsn_cli.fsutil import atomic_path

    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii")


def check_local_sha(path: Path, pinned: Optional[str], flag: str) -> None:
    """A local file's sha256 must equal `pinned` (``--sha256``) when one is given."""
    if pinned is None:
        return
    got = sha256_file(path)
    if got != pinned:
        raise CheckpointError(f"{path}: sha256 is {got}, {flag} --sha256 wants {pinned}: not the file you pinned")


# ----------------------------------------------------------------------------------------- verification
def expected_architecture(state: dict, entry: Optional[Known], where: str) -> tuple[int, Optional[int]]:
    """(depth, num_classes) the file must match: the named entry's, else what its own tensors say."""
    if entry is not None:
        return entry.depth, entry.num_classes
    from tsn_cli.model.arch import infer_architecture

    arch = infer_architecture(state)
    if arch.depth is None:
        raise CheckpointError(f"{where}: not a TSN or ResNet checkpoint of a supported depth ({arch.describe()})")
    return arch.depth, arch.num_classes


def verify_state(state: dict, depth: int, num_classes: Optional[int], where: str) -> None:
    """Every tensor of a ResNet-`depth` TSN (with `num_classes`, or the backbone alone) must be in `state` with its
    shape, and `state` must hold no backbone tensors such a model lacks. CheckpointError names the first misfit."""
    from tsn_cli.model.arch import state_shapes
    from tsn_cli.model.checkpoint import _looks_backbone, match_state

    part = "backbone" if num_classes is None else "full"
    _, rep = match_state(state_shapes(depth, num_classes), state, part, where)
    extra = [k for k in rep.unexpected if _looks_backbone(k) or (part == "full" and k.startswith("head."))]
    bad = len(rep.missing) + len(rep.skipped_shape) + len(extra)
    if not bad:
        return
    want = f"ResNet-{depth} backbone" if num_classes is None else f"TSN ResNet-{depth} with {num_classes} classes"
    if rep.skipped_shape:
        k, fs, ms = rep.skipped_shape[0]
        what = f"{k} is {list(fs)} in the file, {list(ms)} in a {want}"
    elif rep.missing:
        what = f"{rep.missing[0]} is not in the file"
    else:
        what = f"the file has {extra[0]}, which a {want} does not"
    more = f" (+{bad - 1} more tensors that do not fit)" if bad > 1 else ""
    from tsn_cli.model.arch import infer_architecture

    arch = infer_architecture(state)
    is_ = f"; the file is {arch.describe()}" if arch.blocks else ""
    raise CheckpointError(f"{where}: not a {want}: {what}{more}{is_}")


def verify_file(path: Path, entry: Optional[Known], where: str) -> dict:
    """Load `path` with the safe loader and :func:`verify_state` it; returns the state. Errors start with `where`."""
    from tsn_cli.model.checkpoint import load_state

    try:
        state = load_state(path)
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(f"{where}: {msg[len(str(path)) + 2 :] if msg.startswith(str(path)) else msg}") from None
    depth, classes = expected_architecture(state, entry, where)
    verify_state(state, depth, classes, where)
    return state


# ----------------------------------------------------------------------------------------- downloading
Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class Fetched:
    """The local file a remote value resolved to."""

    path: Path
    sha256: str
    downloaded: bool  # False: a cache hit
    url: str


def _offline(remote: Remote, reason: str) -> DownloadError:
    return DownloadError(
        f"cannot download {remote.url} ({reason}); offline? put the file at {remote.cache} "
        f"(or set {ENV_MIRROR} to a reachable copy of the weights folder)"
    )


def _open(remote: Remote, start: int):
    headers = {"User-Agent": "tsn-cli", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return None  # our part is no prefix of the file the server has now: start again
        hint = " (no such file there: check the URL or " + ENV_MIRROR + ")" if exc.code == 404 else ""
        raise DownloadError(
            f"cannot download {remote.url}: HTTP {exc.code} {exc.reason}{hint}; or put the file at {remote.cache}"
        ) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        text = first_line(reason) if isinstance(reason, BaseException) else str(reason)
        raise _offline(remote, re.sub(r"^\[Errno -?\d+\] ", "", text)) from None


def _content_range(resp, start: int) -> tuple[bool, Optional[int]]:
    """(whether the response continues at `start`, the full file size or None)."""
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if m and int(m.group(1)) == start:
            return True, None if m.group(3) == "*" else int(m.group(3))
        return False, None
    length = resp.headers.get("Content-Length")
    return False, int(length) if length and length.isdigit() else None


def _download_once(remote: Remote, part: Path, progress: Optional[Progress]) -> bool:
    """One request: continue or restart `part`. True when the file is complete, False when the body broke off."""
    start = part.stat().st_size if part.exists() else 0
    resp = _open(remote, start)
    if resp is None:
        part.unlink(missing_ok=True)
        start = 0
        resp = _open(remote, 0)
    with resp:
        resumed, total = _content_range(resp, start)
        if start and not resumed:  # the server ignored Range (200) or answered another range: start over
            if resp.status == 206:
                resp.close()
                part.unlink(missing_ok=True)
                return False
            start = 0
        done = start
        if progress:
            progress(done, total)
        with open(part, "ab" if resumed else "wb") as out:
            try:
                while True:
                    block = resp.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            except (OSError, HTTPException):  # reset, timeout, IncompleteRead: keep what came, continue later
                return False
    if total is not None and done != total:
        if done > total:
            part.unlink(missing_ok=True)
            raise DownloadError(f"cannot download {remote.url}: got {done} bytes, the server announced {total}")
        return False
    return True


def _lock(path: Path):
    """An exclusive lock on ``<file>.lock`` (several ranks of one job may fetch the same file); a no-op on Windows."""
    import contextlib

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        with open(path.with_name(path.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    return held()


def _use_cached(remote: Remote, pinned: Optional[str]) -> Fetched:
    """A cache hit: the recorded (or pinned) sha256 must still match; a file put there by hand is verified once."""
    path = remote.cache
    digest = sha256_file(path)
    want = pinned or (remote.entry.sha256 if remote.entry else None)
    recorded = recorded_sha(path)
    if want is not None and digest != want:
        raise CheckpointError(
            f"{path}: sha256 is {digest}, expected {want} (--sha256 or the weights table): "
            f"delete it to download {remote.url} again"
        )
    if recorded is not None and digest != recorded:
        raise CheckpointError(
            f"{path}: the file changed since it was downloaded (sha256 {digest}, recorded "
            f"{recorded} in {_sidecar(path).name}): delete both to download {remote.url} again"
        )
    if recorded is None:  # placed by hand (the offline hint says where): check it before the first use
        verify_file(path, remote.entry, str(path))
        _record_sha(path, digest)
    return Fetched(path, digest, False, remote.url)


def fetch(
    remote: Remote,
    pinned: Optional[str] = None,
    progress: Optional[Progress] = None,
    on_start: Optional[Callable[[Remote, int], None]] = None,
) -> Fetched:
    """The cached file for `remote`, downloading (and verifying) it first when it is not cached.

    `pinned` is a sha256 the file must have. `on_start(remote, bytes already in .part)` is called before a
    download; `progress(done, total)` while it runs. Raises :class:`DownloadError` (network) or
    :class:`CheckpointError` (a bad file, deleted again) naming the URL and the cache path.
    """
    path = remote.cache
    if path.is_file():
        return _use_cached(remote, pinned)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the weights cache {path.parent}: {exc.strerror or exc} "
            f"(set {ENV_CACHE} to a writable folder)"
        ) from None
    with _lock(path):
        if path.is_file():  # another process finished it while we waited
            return _use_cached(remote, pinned)
        part = path.with_name(path.name + ".part")
        if on_start:
            on_start(remote, part.stat().st_size if part.exists() else 0)
        for _ in range(_ATTEMPTS):
            if _download_once(remote, part, progress):
                break
        else:
            have = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"download of {remote.url} broke off {_ATTEMPTS} times ({have} bytes kept in {part}); "
                "run the command again to continue it"
            )
        digest = sha256_file(part)
        want = pinned or (remote.entry.sha256 if remote.entry else None)
        where = f"{remote.url} (downloaded for {path})"
        if want is not None and digest != want:
            part.unlink(missing_ok=True)
            raise CheckpointError(
                f"{where}: sha256 is {digest}, expected {want}: a corrupted or different file "
                "(deleted; run again to download it again)"
            )
        try:
            verify_file(part, remote.entry, where)
        except CheckpointError as exc:
            part.unlink(missing_ok=True)
            fix = f"deleted; check the URL/{ENV_MIRROR}, or put a good copy at {path}"
            raise CheckpointError(f"{exc} ({fix})") from None
        os.replace(part, path)
        _record_sha(path, digest)
    return Fetched(path, digest, True, remote.url)


def cached_entries() -> list[dict]:
    """One row per known name: name, url (mirror applied), architecture, cached path/size/sha256 or None."""
    rows = []
    for name, e in known_weights().items():
        path = cache_path(e.url)
        cached = path.is_file()
        rows.append(
            {
                "name": name,
                "url": url_for(e),
                "architecture": e.describe(),
                "depth": e.depth,
                "num_classes": e.num_classes,
                "seg_num": e.seg_num,
                "about": e.about,
                "cached": cached,
                "path": str(path),
                "size": path.stat().st_size if cached else None,
                "sha256": recorded_sha(path) if cached else (e.sha256 or None),
            }
        )
    return rows


def resolve_value(
    value: str, pinned: Optional[str] = None, progress: Optional[Progress] = None, on_start=None
) -> tuple[Path, Optional[Fetched]]:
    """A ``--weights``/``--pretrained`` value -> (local path, the fetch when it was a name or URL)."""
    remote = remote_source(value)
    if remote is None:
        return Path(value), None
    got = fetch(remote, pinned, progress, on_start)
    return got.path, got


def describe_file(path: Path) -> dict:
    """What a weights file holds: size, sha256, architecture, class count, tensor/parameter counts, and the load
    report against the architecture its tensors describe (a TSN with its class count, or a backbone alone)."""
    import numpy as np

    from tsn_cli.model.arch import infer_architecture, state_shapes
    from tsn_cli.model.checkpoint import load_state, match_state

    path = Path(path)
    state = load_state(path)
    arch = infer_architecture(state)
    out = {
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "architecture": arch.describe()
        if arch.num_classes is not None or arch.depth is None
        else f"ResNet-{arch.depth} backbone (no head)",
        "depth": arch.depth,
        "num_classes": arch.num_classes,
        "tensors": len(state),
        "parameters": int(sum(int(np.prod(v.shape)) for v in state.values())),
        "dtypes": sorted({str(v.dtype) for v in state.values()}),
        "load_report": None,
        "fits": False,
    }
    if arch.depth is not None:
        part = "full" if arch.num_classes is not None else "backbone"
        _, rep = match_state(state_shapes(arch.depth, arch.num_classes), state, part, str(path))
        out["load_report"] = rep.summary()
        try:
            verify_state(state, arch.depth, arch.num_classes, str(path))
            out["fits"] = True
        except CheckpointError as exc:
            out["load_report"] += f" ({exc})"
    return out
