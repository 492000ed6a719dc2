"""Frame-access planner: decode each wanted frame of a video once, by the cheapest route the container allows.

A video stream is decodable only from a key frame onwards. Given the sorted distinct frame indices a sampling
protocol needs and the stream's key-frame positions (read from the container's packets, no decoding), `plan`
splits the work into runs: each run starts at a key frame -- either by seeking there, or by carrying on the
running decode when the frames in between are fewer than a seek costs -- and ends at the last wanted frame of
its group of pictures. A dense protocol (25 segments of a short clip) becomes one forward pass; sparse samples
of a long video with many key frames become one seek per group of pictures that holds a wanted frame.

`OpenVideo` opens a container once (an MP4/MOV without FFmpeg's stream probe, which would decode frames the
planner does not need) and indexes it; that one container serves every read of the video. `read_frames` runs a
plan with PyAV (FFmpeg): frame threads only where they pay (`decode_threads`: large frames, long forward runs,
a free core); H.264 packets that hold a non-reference picture (every slice has ``nal_ref_idc`` 0: no other
frame is predicted from it) and are not wanted are never given to the decoder -- what FFmpeg's
``skip_frame=NONREF`` does, but per packet, so wanted non-reference frames still decode; and once the packets
of a run's wanted frames are in, the decoder is drained instead of fed the next packets (the frames it holds
back for reordering come out without decoding anything later). The frames that are decoded are bit-identical,
since none of them depends on a dropped one. Frames are identified by presentation time stamp (the order decord
indexes them in), converted as ``to_ndarray(format="rgb24")`` does (`OpenVideo.rgb`); `tests/test_access.py` and
`tests/test_access_reads.py` prove the pixels equal decord's ``get_batch`` on every real clip the tests have,
with and without frame threads; codecs they do not cover are not indexed (decord reads them). Any surprise (no
time stamps, time stamps that do not rise in the decoder's output, a seek that lands after its key frame, a
damaged frame the decoder concealed, a wanted frame that does not come out) raises `AccessError` and the caller
falls back to decord.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# A seek flushes the decoder and restarts the demuxer; measured on this machine it costs about as much as
# decoding a few frames. Gaps shorter than this are decoded through instead.
SEEK_COST_FRAMES = 4
# Frame threads (measured, benchmarks/bench_decode.py): below this many pixels per frame, or on runs shorter
# than THREADS_MIN_RUN decoded frames per seek, the threads' hand-off and pipeline refill cost more than they save.
THREADS_MIN_PIXELS = 960 * 540
THREADS_MIN_RUN = 24
THREADS_MAX = 4


class AccessError(Exception):
    """The planned read cannot be trusted for this file (the caller falls back to decord)."""


@dataclass(frozen=True)
class Run:
    """Decode from key frame ``key`` (after a seek if ``seek``, else by carrying on) up to ``wanted[-1]``."""

    key: int
    seek: bool
    wanted: tuple[int, ...]


@dataclass(frozen=True)
class StreamIndex:
    """Presentation time stamps of every frame (in display order) and the key frames' positions."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    # every packet whole (none empty, none cut off by the end of the file, none hidden pre-roll) and as many as
    # the header declares, in a container whose packets are its samples: the frame count is decord's (it counts
    # the packets it demuxes) and every frame's data is in the file
    complete: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.pts)


def plan(wanted: Sequence[int], keyframes: Sequence[int], seek_cost: int = SEEK_COST_FRAMES) -> list[Run]:
    """Runs that decode every frame in ``wanted`` (sorted, distinct) starting from ``keyframes`` (sorted, first
    is 0). Each gap between runs is either decoded through (when it is at most ``seek_cost`` frames) or seeked
    over; each choice is independent, so taking the cheaper one per gap gives the cheapest plan."""
    if not wanted:
        return []
    if not keyframes or keyframes[0] != 0:
        keyframes = [0, *keyframes]
    groups: list[tuple[int, list[int]]] = []
    for w in wanted:
        key = keyframes[bisect.bisect_right(keyframes, w) - 1]
        if groups and groups[-1][0] == key:
            groups[-1][1].append(w)
        else:
            groups.append((key, [w]))
    runs: list[Run] = []
    pos = 0  # next frame the running decoder would give (a fresh decoder starts at frame 0)
    for key, ws in groups:
        # decoding through costs the frames from `pos` up to the key frame; seeking costs `seek_cost`
        seek = key - pos > seek_cost
        runs.append(Run(key if seek else pos, seek, tuple(ws)))
        pos = ws[-1] + 1
    return runs


def _av():
    import av

    av.logging.set_level(None)  # FFmpeg's own log lines must not reach the user; failures are ours to report
    return av


@dataclass(frozen=True)
class Scan:
    """One pass over a video stream's packets (no decoding): what the container lists and what the demuxer reaches.

    ``packets``: (pts, is_keyframe) of every non-empty packet, in file order. ``declared``: the frame count the
    container's own tables state (AVI header, MP4 sample table), None when it has none (WebM, MKV: OpenCV then
    guesses duration x frame rate, wrong for variable frame rates). ``hidden``: packets the container marks to be
    dropped by the decoder (pre-roll before an edit list's start, as ``ffmpeg -ss ... -c copy`` writes).
    """

    packets: tuple[tuple[int | None, bool], ...]
    declared: int | None
    hidden: int
    complete: bool = True  # False: the demuxer failed before the end of the file
    # every packet's presentation time stamp equals its decoding one (the container stores no reordering)
    pts_is_dts: bool = False

    @property
    def expected(self) -> int:
        """Frames a decoder should reach: the declared count (or, without one, the packets found) less the hidden
        pre-roll -- a count, never a duration x frame-rate estimate."""
        base = self.declared if self.declared else len(self.packets)
        return max(0, base - self.hidden)


def scan_video(path: str, budget=None) -> Scan | None:
    """Read every packet of the first video stream within ``budget`` (a `tsn_cli.data.budget.Budget`; a new one
    if None). None when PyAV cannot open it as a video (the decoders then give their own verdict); raises
    `VideoTimeout` when the budget runs out -- FFmpeg's interrupt callback stops a single long read, the check
    between packets a long series of them."""
    from tsn_cli.data.budget import Budget
    from tsn_cli.fsutil import c_path

    budget = budget or Budget()
    av = _av()
    left = max(budget.remaining(), 1e-3)
    try:
        with c_path(path) as name, av.open(name, timeout=(left, left)) as c:  # c_path: names that are not UTF-8
            return _scan(av, c, path, budget)[0]
    except av.ExitError:
        raise budget.error(path) from None
    except (av.FFmpegError, IndexError, OSError, ValueError):
        if budget.spent():
            raise budget.error(path) from None
        return None


def _scan(av, c, path: str, budget) -> tuple[Scan | None, bool]:
    """The `Scan` of open container ``c``'s first video stream (None: no packet) and whether every packet is
    whole: none empty but the end-of-stream one, none the file ends inside of (FFmpeg flags it corrupt)."""
    stream = c.streams.video[0]
    declared = int(stream.frames or 0) or None
    packets: list[tuple[int | None, bool]] = []
    hidden, whole, same = 0, True, True
    try:
        for p in c.demux(stream):
            if p.size > 0:
                packets.append((p.pts, p.is_keyframe))
                same = same and p.pts == p.dts
                hidden += bool(p.is_discard)
                whole = whole and not p.is_corrupt
            else:
                whole = whole and p.pts is None and p.dts is None
            if budget.spent():
                raise budget.error(path)
    except av.ExitError:
        raise budget.error(path) from None
    except (av.FFmpegError, OSError, ValueError):
        if budget.spent():
            raise budget.error(path) from None
        return (Scan(tuple(packets), declared, hidden, complete=False, pts_is_dts=same) if packets else None), False
    return Scan(tuple(packets), declared, hidden, pts_is_dts=same), whole


def index_stream(path: str, scan: Scan | None = None, whole: bool = False) -> StreamIndex:
    """The container's packets (no decoding; ``scan`` if already read): time stamps in display order and key-frame
    positions. Raises AccessError when the stream cannot be read or a packet has no time stamp (frames could not
    be identified). ``whole``: `_scan`'s verdict, for `StreamIndex.complete` (with a scan read here: its own)."""
    if scan is None:
        video = OpenVideo(path)
        video.close()
        if video.index is None:
            raise AccessError(
                "no index: the codec is not proven to decode as decord does, or the packets do not "
                "identify the frames (time stamps missing or repeated)"
            )
        return video.index
    if not scan.complete:
        raise AccessError("cannot index: the demuxer failed")
    pkts = scan.packets
    if not pkts or any(p is None for p, _ in pkts):
        raise AccessError("packets without time stamps")
    order = sorted(range(len(pkts)), key=lambda k: pkts[k][0])
    pts = tuple(pkts[k][0] for k in order)
    if len(set(pts)) != len(pts):
        raise AccessError("duplicate time stamps")
    rank = {p: i for i, p in enumerate(pts)}
    keys = tuple(sorted(rank[p] for p, key in pkts if key))
    complete = whole and scan.declared == len(pts) and scan.hidden == 0
    return StreamIndex(pts, keys, complete)


# An MP4/MOV header describes its streams completely; FFmpeg's stream probe would only decode the first frames
# for facts the planner does not use (the pixel format, taken from each decoded frame) -- 10 ms on a 720p H.264.
_QUICK_PROBE = {"probesize": "32", "analyzeduration": "0"}
# Containers whose packets are the container's own samples (no parser splits or merges them), so decord -- which
# counts the packets it demuxes -- and this index see the same frames whatever FFmpeg version each links.
_SAMPLE_CONTAINERS = {"mov", "mp4", "avi"}
# Codecs whose frames PyAV's FFmpeg decodes to decord's pixels, proven by tests/test_access.py on real clips.
# Others take decord's path: measured on opencv-doc's vtest.avi, MS-MPEG-4 v3 ("msmpeg4") P frames differ from
# decord's by 1-2 levels, and the difference grows along each group of pictures.
_DECORD_IDENTICAL_CODECS = {"h264", "mpeg4", "mjpeg"}


def _formats(container) -> set[str]:
    return set(container.format.name.split(","))


class OpenVideo:
    """One open container serving the packet scan, the index and every planned read of a video (an open, the
    codec probe and the packet pass cost as much as decoding a few frames on small clips: done once, not per
    read). ``scan``: the `Scan`; ``index``: the `StreamIndex`, None when the packets cannot index the frames.
    Raises AccessError when PyAV cannot open the file as a video, VideoTimeout when ``budget`` runs out. ``close``
    it."""

    def __init__(self, path: str, budget=None):
        from tsn_cli.data.budget import Budget
        from tsn_cli.fsutil import c_path

        av = _av()
        self.path = path
        self.container = None
        self.threads: int | None = None  # fixed by the first read: the codec opens then
        self._reformatter = None
        budget = budget or Budget()
        left = max(budget.remaining(), 1e-3)
        try:
            with c_path(path) as name:  # c_path: names that are not UTF-8 (FFmpeg reopens /proc/self/fd/N itself)
                self.container = av.open(name, timeout=(left, left), options=_QUICK_PROBE)
                if not _formats(self.container) & {"mov", "mp4"}:  # others may need the probe to find streams
                    self.container.close()
                    self.container = av.open(name, timeout=(left, left))
            self.stream = self.container.streams.video[0]
            self.scan, whole = _scan(av, self.container, path, budget)
        except av.ExitError:
            self.close()
            raise budget.error(path) from None
        except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
            self.close()
            if budget.spent():
                raise budget.error(path) from None
            raise AccessError(f"cannot open: {exc}") from None
        except BaseException:
            self.close()
            raise
        if self.scan is None:
            self.close()
            raise AccessError("no packets")
        whole = whole and bool(_formats(self.container) & _SAMPLE_CONTAINERS)
        self.index = None  # None: the planner does not serve this video
        ctx = self.stream.codec_context
        # a stream that reorders frames (B-frames) in a container that stores no reordering: the time stamps are
        # the decoding order, not the display order decord indexes (opencv-doc's box.mp4, an MP4 without ctts)
        reordered = bool(ctx.has_b_frames) and self.scan.pts_is_dts
        if ctx.name in _DECORD_IDENTICAL_CODECS and not reordered:
            try:
                self.index = index_stream(path, self.scan, whole)
            except AccessError:
                pass

    def rgb(self, frame) -> np.ndarray:
        """``frame.to_ndarray(format="rgb24")``, the same pixels, with one colour converter for every frame of the
        video: ``to_ndarray`` sets up a new one per frame, with scaling threads (thread start-up per frame, ms on a
        busy machine; a frame's conversion is a fraction of a millisecond on one thread)."""
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def close(self) -> None:
        """Release the container and its decoder."""
        c, self.container = self.container, None
        if c is not None:
            c.close()


_THREADS_PER_PROCESS: int | None = None  # set_decode_threads: fixed by a process that decodes in parallel with others


def set_decode_threads(threads: int | None) -> None:
    """Fix the codec threads of every read in this process (None: choose per read, `decode_threads`). Decode worker
    processes set 1: they decode in parallel over videos, and frame threads in each would oversubscribe the cores
    (the load average they are otherwise chosen from lags by a minute)."""
    global _THREADS_PER_PROCESS
    _THREADS_PER_PROCESS = None if threads is None else max(1, int(threads))


def decode_threads(index: StreamIndex, wanted: Sequence[int], width: int, height: int) -> int:
    """Codec threads for a read (1 = none): frame threads pay only on large frames decoded in long forward runs
    (each seek flushes the threads' pipeline) and only with a core free for them (load average below the CPUs)."""
    if _THREADS_PER_PROCESS is not None:
        return _THREADS_PER_PROCESS
    if width * height < THREADS_MIN_PIXELS:
        return 1
    runs = plan(wanted, index.keyframes)
    frames = sum(r.wanted[-1] - r.key + 1 for r in runs)
    if frames < THREADS_MIN_RUN * len(runs):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    busy = max(0.0, os.getloadavg()[0] - 1.0)  # the load average counts this process itself
    return max(1, min(THREADS_MAX, round(cpus - busy)))


def read_frames(
    path: str | OpenVideo, index: StreamIndex, wanted: Sequence[int], threads: int | None = None, budget=None
) -> dict[int, np.ndarray]:
    """Decode the sorted distinct frame indices ``wanted`` by `plan`; returns ``{index: uint8 [H, W, 3] RGB}``.
    ``path``: a file, or an `OpenVideo` to read from (kept open). ``threads``: codec threads for the first read
    of a video (None: `decode_threads`; 0: FFmpeg's choice). Raises AccessError when a wanted frame does not
    come out, `VideoTimeout` when the file's ``budget`` (`tsn_cli.data.budget.Budget`) runs out."""
    from tsn_cli.data.budget import Budget

    av = _av()
    budget = budget or Budget()
    video = path if isinstance(path, OpenVideo) else OpenVideo(path, budget)
    try:
        return _read(av, video, index, wanted, threads, budget)
    except av.ExitError:
        raise budget.error(video.path) from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AccessError(f"decoding failed: {exc}") from None
    finally:
        if video is not path:
            video.close()


def _read(av, video: OpenVideo, index: StreamIndex, wanted: Sequence[int], threads: int | None, budget):
    c, stream = video.container, video.stream
    if c is None:
        raise AccessError("the video is closed")
    rank = {p: i for i, p in enumerate(index.pts)}
    out: dict[int, np.ndarray] = {}
    ctx = stream.codec_context
    if video.threads is None:  # the codec opens at the first decode: its threads are chosen once, now
        if threads is None:
            threads = decode_threads(index, wanted, ctx.width or 0, ctx.height or 0)
        if threads != 1:
            stream.thread_type = "AUTO"  # frame + slice threads; output is bit-exact either way
            stream.thread_count = threads
        video.threads = threads
    droppable = _nonref_test(ctx)
    want = set(wanted)

    def frames(needed: set):
        """Frames decoded from the current position; once the packets of every frame in ``needed`` (time stamps)
        have been sent, the decoder is drained instead of fed on: the frames it still holds back for reordering
        (and, with frame threads, in its pipeline) come out without decoding any later packet."""
        left = set(needed)
        for pkt in c.demux(stream):
            if budget.spent():
                raise budget.error(video.path)
            if not pkt.size:  # the end-of-stream packet: drains the decoder
                yield from pkt.decode()
                return
            if pkt.pts in left:
                left.discard(pkt.pts)
            elif droppable is not None and rank.get(pkt.pts, -1) not in want and droppable(bytes(pkt)):
                continue
            yield from pkt.decode()
            if not left:
                yield from ctx.decode(None)
                ctx.flush_buffers()  # back from end-of-stream; the next read seeks to a key frame
                return

    runs = plan(wanted, index.keyframes)
    decoded = None
    for k, run in enumerate(runs):
        # the container is shared between reads (and its packet scan ended at the end of the file): the first run
        # always seeks, to frame 0 when the plan decodes from the start
        if run.seek or k == 0:
            c.seek(index.pts[run.key], stream=stream, backward=True, any_frame=False)
            # the runs that carry on from this one share its decoder: drain after the last of them
            group = next((j for j in range(k + 1, len(runs)) if runs[j].seek), len(runs))
            decoded = frames({index.pts[w] for r in runs[k:group] for w in r.wanted})
        _decode_run(decoded, Run(run.key, True, run.wanted) if k == 0 else run, rank, out, video.rgb)
    missing = [w for w in wanted if w not in out]
    if missing:
        raise AccessError(f"frames {missing[:3]} did not decode")
    return out


def _nonref_test(ctx):
    """For H.264 in MP4/MKV layout (length-prefixed NAL units, ``avcC`` extradata): a test telling whether a
    packet holds only non-reference slices. None for other codecs and layouts (nothing is dropped)."""
    extra = ctx.extradata
    if ctx.name != "h264" or not extra or len(extra) < 7 or extra[0] != 1:
        return None
    size = (extra[4] & 3) + 1

    def nonref(data: bytes) -> bool:
        pos, slices = 0, 0
        while pos + size < len(data):
            n = int.from_bytes(data[pos : pos + size], "big")
            header = data[pos + size]
            if header & 0x1F in (1, 5):  # coded slice (5: IDR, always a reference)
                if header & 0x60:  # nal_ref_idc != 0
                    return False
                slices += 1
            pos += size + n
        return slices > 0 and pos == len(data)  # malformed lengths: keep the packet

    return nonref


def _decode_run(frames, run: Run, rank: dict[int, int], out: dict[int, np.ndarray], rgb) -> None:
    want = set(run.wanted)
    last = run.wanted[-1]
    first = True
    previous = -1
    for frame in frames:
        i = rank.get(frame.pts)
        if i is None:
            raise AccessError(f"decoded a frame with an unknown time stamp {frame.pts}")
        if i <= previous:
            # the decoder gives frames in display order: time stamps that do not rise do not identify them
            # (opencv-doc's box.mp4: an MP4 without composition offsets around H.264 with B-frames)
            raise AccessError(f"frame time stamps out of display order at frame {i}")
        previous = i
        if first and run.seek and i > run.key:
            raise AccessError(f"seek to frame {run.key} landed on frame {i}")
        first = False
        if frame.is_corrupt:
            # the decoder concealed damaged data; concealment differs between FFmpeg builds (decord's is
            # older), so neither this frame nor any later one in the run can be trusted to equal decord's
            raise AccessError(f"frame {i} is damaged")
        if i in want:
            out[i] = rgb(frame)
        if i >= last:
            return
    # the stream ended before the run's last frame: read_frames reports the missing ones
