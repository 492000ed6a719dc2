"""Result files for big batch jobs (`tsn predict --results FILE`) and input sharding (`--shard I/N`).

One line per input as it finishes, written with a single `write` on an O_APPEND descriptor (a kill leaves whole
lines, at worst one partial last line), so a job killed at 60% continues where it stopped: the lines already in
the file name the inputs to skip. A trailing partial line (the kill hit mid-write) is cut off before appending.
`.jsonl` lines are `Prediction.to_json()`; `.csv` has the columns of `CSV_COLUMNS` (top-k as JSON text).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from tsn_cli.errors import ConfigError, TsnError

CSV_COLUMNS = ["path", "class_id", "label", "score", "top_k", "warnings", "error"]


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): the second of four shards (1-based); anything else is a ConfigError."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard: {text!r} is not I/N (e.g. 1/4 ... 4/4)") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard: {text!r}: I must be between 1 and N (1/{max(n, 1)} ... {max(n, 1)}/{max(n, 1)})")
    return i, n


def in_shard(path: str, i: int, n: int) -> bool:
    """Whether `path` belongs to shard i of n: a stable hash of the path as given (same on every machine and
    run, unlike Python's `hash`), so N machines with the same inputs split them without overlap."""
    h = int.from_bytes(hashlib.sha1(path.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return h % n == i - 1


class ResultsFile:
    """An append-only .jsonl or .csv of per-input results; `recorded` are the paths already in it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in (".jsonl", ".csv"):
            raise ConfigError(f"--results: {self.path} must end in .jsonl or .csv")
        if self.path.is_dir():
            raise ConfigError(f"--results: {self.path} is a folder; give a file name (results.jsonl)")
        self.recorded: set[str] = set()
        self.dropped_partial = False
        self._read()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise TsnError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        if self.kind == ".csv" and os.fstat(self.fd).st_size == 0:
            self._write(self._csv_line(CSV_COLUMNS))

    def _read(self) -> None:
        """Collect the recorded paths; cut a trailing partial line (no newline: the writer was killed)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TsnError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.truncate(self.path, end)
            self.dropped_partial = True
        text = data[:end].decode("utf-8", "surrogateescape")
        if self.kind == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    self.recorded.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise TsnError(
                        f"{self.path}:{n}: not a result line of tsn predict; give a new --results "
                        "file or remove this one"
                    ) from None
        else:
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != CSV_COLUMNS:
                raise TsnError(
                    f"{self.path}:1: not a tsn predict results CSV (header {rows[0][:3]}...); give a new --results file"
                )
            self.recorded.update(r[0] for r in rows[1:] if r)

    @staticmethod
    def _csv_line(row: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        return buf.getvalue()

    def _write(self, line: str) -> None:
        data = line.encode("utf-8", "surrogateescape")
        try:
            written = os.write(self.fd, data)  # one write: the line lands whole or (on a kill) partly, at the end
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            raise TsnError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc

    def append(self, doc: dict) -> None:
        """Record one input's result (`Prediction.to_json()`)."""
        if self.kind == ".jsonl":
            self._write(json.dumps(doc, ensure_ascii=False) + "\n")
        else:
            top = (doc.get("top_k") or [{}])[0]
            self._write(
                self._csv_line(
                    [
                        doc["path"],
                        top.get("class_id", ""),
                        top.get("label", ""),
                        "" if "score" not in top else f"{top['score']:.6f}",
                        json.dumps(doc.get("top_k", [])) if "top_k" in doc else "",
                        "; ".join(doc.get("warnings", [])),
                        doc.get("error", ""),
                    ]
                )
            )
        self.recorded.add(doc["path"])

    def close(self) -> None:
        """Close the file."""
        os.close(self.fd)
