"""`tsn prepare ...`: build file lists, extract frames, check lists, write the demo dataset.

A thin layer: argument parsing and rendering only; the work is in `tsn_cli.prepare.*`. Progress goes to
stderr, results to stdout as rich tables or (`--json`) one JSON document with the same content.
Exit codes: 0 all good, 1 something was skipped (bad/missing videos; listed in the report), 2 a real
failure (raised as TsnError and printed as one line by the root app).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from tsn_cli.cli.common import VideoTimeoutOpt

prepare_app = typer.Typer(
    help="Build PaddleVideo-format file lists and dataset.yaml, extract frames and check lists (your own videos by "
    "class folder or CSV, UCF101, Kinetics-400, demo).\n\n"
    "Exit codes: 0 = everything usable, 1 = some videos were skipped (listed in the report), 2 = error.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_Frames = Annotated[
    bool, typer.Option("--frames", help="Also extract JPEG frames (img_00001.jpg ...) and write frame lists.")
]
_Out = Annotated[Optional[Path], typer.Option("--out", help="Folder for the lists and rawframes/ (default: ROOT).")]
_Absolute = Annotated[
    bool,
    typer.Option(
        "--absolute", help="Write absolute paths (default: relative to the list's folder, so the dataset can move)."
    ),
]
_Short = Annotated[
    Optional[int],
    typer.Option(
        "--short-side",
        min=16,
        help="Resize frames so the short side is N pixels (e.g. 256); default: native size.",
        rich_help_panel="Frames",
    ),
]
_Quality = Annotated[
    int,
    typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality of extracted frames.", rich_help_panel="Frames"),
]
_FramesDir = Annotated[
    Optional[Path],
    typer.Option("--frames-dir", help="Where frame folders go (default: OUT/rawframes).", rich_help_panel="Frames"),
]
_Workers = Annotated[
    Optional[int], typer.Option("--workers", "-j", min=1, help="Parallel processes (default: all cores).")
]
_Verify = Annotated[
    bool,
    typer.Option(
        "--verify", help="Without --frames: decode every frame of every video to catch truncated files (slower)."
    ),
]
_Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
_Wait = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="If another tsn prepare is writing the same lists or frames, wait for it to finish (default: stop, "
        "exit 2). Shards (--shard) never lock: they run side by side by design.",
    ),
]
_Shard = Annotated[
    Optional[str],
    typer.Option(
        "--shard",
        metavar="I/N",
        help="With --frames: extract only shard I of N (1-based; videos chosen by a hash of their path), write no "
        "lists. Run N of these at once (a Slurm array, a Kubernetes job) into one folder, then the same command "
        "without --shard writes the lists and re-extracts nothing complete.",
        rich_help_panel="Frames",
    ),
]
_Val = Annotated[float, typer.Option("--val", help="Fraction of each class's groups in val.", rich_help_panel="Split")]
_Test = Annotated[
    float,
    typer.Option("--test", help="Fraction of each class's groups in test (0: no test list).", rich_help_panel="Split"),
]
_SplitSeed = Annotated[
    int, typer.Option("--seed", help="Seed of the split (same seed, same split).", rich_help_panel="Split")
]
_Group = Annotated[
    Optional[str],
    typer.Option(
        "--group",
        metavar="REGEX",
        help="Group key in a clip's file name: clips with the same key share a split (first capture group, else the "
        "match; default '_g(\\d+)_', UCF-style _g08_). A clip it does not match is its own group.",
        rich_help_panel="Split",
    ),
]


# ------------------------------------------------------------------------------------------ rendering


class _Bar:
    """A rich progress bar (videos done, frames/s while extracting or videos/s while checking, ETA) on stderr,
    fed by the library's callbacks."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import TextColumn

        from tsn_cli.ui import make_progress

        self.progress = make_progress(
            TextColumn("{task.fields[rate]}"), TextColumn("[red]{task.fields[bad]}"), disable=quiet
        )
        self.task = None
        self.extracting = False

    def __enter__(self) -> "_Bar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, total: int, description: str) -> None:
        """Begin (or restart) the bar with `total` videos."""
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total, rate="", bad="")
        self.extracting = description.startswith("extracting")

    def result(self, res, stats) -> None:
        """One video finished."""
        if self.extracting:
            rate = f"{stats.fps:,.0f} frames/s" if stats.frames else ""
        else:  # checking decodes frames too, but the work a user waits for is counted in videos
            rate = f"{stats.done / stats.seconds:,.1f} videos/s" if stats.seconds > 0 else ""
        bad = f"{stats.bad} bad" if stats.bad else ""
        self.progress.update(self.task, advance=1, rate=rate, bad=bad)


def _render_bad(bad: list, title: str = "Skipped entries") -> None:
    from tsn_cli.ui import console, table

    if bad:
        rows = [(b.path, b.reason, b.where) for b in bad]
        console.print(table(f"{title} ({len(bad)})", ["entry", "reason", "where"], rows, paths=(0,)))


def _render_report(report, json_out: bool) -> None:
    """Print a PrepareReport as tables or JSON, then exit 1 if anything was skipped."""
    from tsn_cli.ui import console, print_json, table, warn

    if json_out:
        print_json(report.to_dict())
    else:
        if report.shard is None:
            rows = [(lst.path, lst.kind, lst.subset or "-", lst.split or "-", lst.rows) for lst in report.lists]
            console.print(
                table(
                    f"{report.dataset}: lists written",
                    ["file", "kind", "subset", "split", "rows"],
                    rows,
                    numeric=(4,),
                    paths=(0,),
                )
            )
        summary = [
            ("classes", report.num_classes),
            ("videos referenced", report.videos),
            ("usable", report.ok),
            ("skipped", len(report.bad)),
            (
                "video checks",
                "every frame decoded" if report.checks == "full" else "opened + first frame (--verify decodes all)",
            ),
        ]
        if report.shard is not None:
            summary.insert(0, ("shard", f"{report.shard}: frames only, no lists (run without --shard to write them)"))
        summary += [
            (f"{subset} split", f"{s['videos']} videos, {s['classes']} classes") for subset, s in report.splits.items()
        ]
        if report.other_files:
            summary.append(("other files (not videos)", report.other_files))
        if report.spec:
            summary.append(("dataset description", report.spec))
        if report.extraction:
            ex = report.extraction
            summary += [
                ("frames dir", ex["frames_dir"]),
                ("extracted now", ex["extracted"]),
                ("already complete", ex["existing"]),
                *(
                    [("of which extracted again (other settings)", ex["extracted_again"])]
                    if ex.get("extracted_again")
                    else []
                ),
                ("frames on disk (listed)", ex["frames"]),
                ("time (s)", f"{ex['seconds']:.1f}"),
                ("frames/s (extracted)", f"{ex['frames_per_s']:,.0f}"),
            ]
        console.print(table("Summary", ["", "value"], summary, paths=(1,)))
        _render_bad(report.bad)
        for w in report.warnings[:20]:
            warn(w)
        if len(report.warnings) > 20:
            warn(f"... and {len(report.warnings) - 20} more warnings (see --json)")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _run_prepare(job: Callable, json_out: bool) -> None:
    """Run a `prepare ucf101/k400` job (called with the progress callbacks) under a progress bar on stderr, then
    render its report; exit 1 if anything was skipped."""
    with _Bar(quiet=False) as bar:
        report = job(on_start=bar.start, on_result=bar.result)
    _render_report(report, json_out)


def _options(shard: Optional[str], wait: bool, **kw):
    """PrepareOptions from the shared flags (with --shard I/N parsed; --wait says on stderr whom it waits for)."""
    from tsn_cli.prepare.runner import PrepareOptions, parse_shard

    return PrepareOptions(shard=parse_shard(shard) if shard is not None else None, wait=wait, on_wait=_waiting, **kw)


def _waiting(message: str) -> None:
    from tsn_cli.ui import info, safe

    info(safe(message))


def _splits(split: Optional[list[int]]) -> Optional[list[int]]:
    from tsn_cli.errors import TsnError

    if split:
        for n in split:
            if n not in (1, 2, 3):
                raise TsnError(f"--split must be 1, 2 or 3, got {n}")
    return split or None


# ------------------------------------------------------------------------------------------- commands


@prepare_app.command("ucf101")
def ucf101(
    root: Annotated[Path, typer.Argument(help="Folder holding UCF-101/<Class>/*.avi and ucfTrainTestlist/.")],
    split: Annotated[
        Optional[list[int]], typer.Option("--split", help="Split 1, 2 or 3 (repeatable; default: all present).")
    ] = None,
    frames: _Frames = False,
    out: _Out = None,
    absolute: _Absolute = False,
    short_side: _Short = None,
    jpeg_quality: _Quality = 95,
    frames_dir: _FramesDir = None,
    workers: _Workers = None,
    verify: _Verify = False,
    shard: _Shard = None,
    wait: _Wait = False,
    json_out: _Json = False,
) -> None:
    """Write UCF101 train/val lists for each split (PaddleVideo formats and names), optionally extracting frames.

    Writes into OUT (default ROOT): ucf101_{train,val}_split_{n}_videos.txt ("path label"), with --frames also \
ucf101_{train,val}_split_{n}_rawframes.txt ("frame_dir num_frames label") and rawframes/<Class>/<video>/, plus \
ucf101_label_list.txt ("0 ApplyEyeMakeup") and dataset.yaml (split 1, or the first --split; for `tsn train --data \
ROOT`). Labels are 0-based from classInd.txt. Missing, empty, unreadable or truncated videos are left out and \
listed at the end (exit code 1). Frame extraction is resumable: run the same command again after an interruption.

    [bold]Examples[/]

        tsn prepare ucf101 data/ucf101

        tsn prepare ucf101 data/ucf101 --split 1 --frames --short-side 256 --workers 8

        tsn prepare ucf101 data/ucf101 --out lists/ --absolute --json
    """
    from tsn_cli.prepare.ucf101 import prepare_ucf101

    opts = _options(
        shard,
        wait,
        frames=frames,
        out=out,
        absolute=absolute,
        short_side=short_side,
        jpeg_quality=jpeg_quality,
        workers=workers,
        verify=verify,
        frames_dir=frames_dir,
    )
    _run_prepare(partial(prepare_ucf101, root, _splits(split), opts), json_out)


@prepare_app.command("k400")
def k400(
    root: Annotated[
        Path, typer.Argument(help="Folder holding the videos: <split>/<label>/<id>_<start>_<end>.mp4 or flat.")
    ],
    annotations: Annotated[
        Path,
        typer.Option("--annotations", "-a", help="Folder with the official CSVs (train.csv, validate.csv / val.csv)."),
    ],
    frames: _Frames = False,
    out: _Out = None,
    absolute: _Absolute = False,
    short_side: _Short = None,
    jpeg_quality: _Quality = 95,
    frames_dir: _FramesDir = None,
    workers: _Workers = None,
    verify: _Verify = False,
    shard: _Shard = None,
    wait: _Wait = False,
    json_out: _Json = False,
) -> None:
    """Write Kinetics-400 lists from the official CSVs, carrying on past the videos every copy misses.

    Writes into OUT (default ROOT): Kinetics-400_label_list.txt ("0 abseiling", sorted class names with spaces as \
underscores), train.list / val.list ("path label") and, with --frames, train_frames.list / val_frames.list \
("frame_dir num_frames label") with frames in rawframes/<label>/<video stem>/, and dataset.yaml (for `tsn train \
--data OUT`). Videos are found by file name (<youtube_id>_<start:06d>_<end:06d>.<ext> or <youtube_id>.<ext>) \
anywhere under ROOT. Missing and bad videos are counted, listed and left out (exit code 1).

    [bold]Examples[/]

        tsn prepare k400 data/k400/videos --annotations data/k400/annotations --out data/k400

        tsn prepare k400 data/k400/videos -a data/k400/annotations --frames --short-side 256 --json
    """
    from tsn_cli.prepare.k400 import prepare_k400

    opts = _options(
        shard,
        wait,
        frames=frames,
        out=out,
        absolute=absolute,
        short_side=short_side,
        jpeg_quality=jpeg_quality,
        workers=workers,
        verify=verify,
        frames_dir=frames_dir,
    )
    _run_prepare(partial(prepare_k400, root, annotations, opts), json_out)


@prepare_app.command("folder")
def folder(
    root: Annotated[Path, typer.Argument(help="Folder holding <class>/<clip>.mp4 (one sub-folder per class).")],
    val: _Val = 0.2,
    test: _Test = 0.0,
    seed: _SplitSeed = 0,
    group: _Group = None,
    frames: _Frames = False,
    out: _Out = None,
    absolute: _Absolute = False,
    short_side: _Short = None,
    jpeg_quality: _Quality = 95,
    frames_dir: _FramesDir = None,
    workers: _Workers = None,
    verify: _Verify = False,
    shard: _Shard = None,
    wait: _Wait = False,
    json_out: _Json = False,
) -> None:
    """Write train/val (and test) lists, label_list.txt and dataset.yaml for your own videos, one folder per class.

    Classes are the sub-folders of ROOT that hold videos (.mp4 .avi .mov .mkv .webm ...), in sorted order; other files \
are counted and left out. Splits are stratified per class and group-aware: clips whose names share the --group key \
(UCF-style _g08_ by default) land in the same split, chosen by a hash of (seed, class, group), so the same seed \
gives the same split and adding videos never moves existing ones; a class with 2 or more groups always has train \
and val clips (a class with one group gets a warning). Writes into OUT (default ROOT): \
{train,val[,test]}_videos.txt ("path label"), with --frames {train,val[,test]}_rawframes.txt and \
rawframes/<class>/<clip>/, label_list.txt ("0 name") and dataset.yaml. Bad videos are left out and listed (exit \
code 1).

    [bold]Examples[/]

        tsn prepare folder my_videos && tsn train --data my_videos --epochs 30

        tsn prepare folder my_videos --val 0.15 --test 0.15 --seed 1 --group '^(\\w+?)_'

        tsn prepare folder my_videos --frames --short-side 256 --shard 1/4
    """
    from tsn_cli.prepare.folder import prepare_folder
    from tsn_cli.prepare.labelled import SplitOptions

    opts = _options(
        shard,
        wait,
        frames=frames,
        out=out,
        absolute=absolute,
        short_side=short_side,
        jpeg_quality=jpeg_quality,
        workers=workers,
        verify=verify,
        frames_dir=frames_dir,
    )
    split_opts = SplitOptions(val=val, test=test, seed=seed, group=group)
    _run_prepare(partial(prepare_folder, root, opts, split_opts), json_out)


@prepare_app.command("csv")
def csv_(
    csv_file: Annotated[Path, typer.Argument(help="CSV with a header: path,label[,split].")],
    root: Annotated[Path, typer.Option("--root", help="Folder the CSV's paths are relative to.")],
    val: _Val = 0.2,
    test: _Test = 0.0,
    seed: _SplitSeed = 0,
    group: _Group = None,
    frames: _Frames = False,
    out: _Out = None,
    absolute: _Absolute = False,
    short_side: _Short = None,
    jpeg_quality: _Quality = 95,
    frames_dir: _FramesDir = None,
    workers: _Workers = None,
    verify: _Verify = False,
    shard: _Shard = None,
    wait: _Wait = False,
    json_out: _Json = False,
) -> None:
    """Write train/val (and test) lists, label_list.txt and dataset.yaml from a CSV of labels.

    The header names the columns path,label and optionally split (any order). label is a class name or a 0-based class \
id (all rows the same kind); split is train, val or test, and without the column splits are assigned as in `tsn \
prepare folder` (--val, --test, --seed, --group). Unknown or missing columns, duplicate paths, labels mixing names \
and ids and unknown splits are errors naming the line (exit code 2). Writes the same files as `prepare folder` \
into OUT (default --root). Bad or missing videos are left out and listed (exit code 1).

    [bold]Examples[/]

        tsn prepare csv labels.csv --root my_videos

        tsn prepare csv labels.csv --root /data/clips --out lists/ --frames --workers 8
    """
    from tsn_cli.prepare.csvfile import prepare_csv
    from tsn_cli.prepare.labelled import SplitOptions

    opts = _options(
        shard,
        wait,
        frames=frames,
        out=out,
        absolute=absolute,
        short_side=short_side,
        jpeg_quality=jpeg_quality,
        workers=workers,
        verify=verify,
        frames_dir=frames_dir,
    )
    split_opts = SplitOptions(val=val, test=test, seed=seed, group=group)
    _run_prepare(partial(prepare_csv, csv_file, root, opts, split_opts), json_out)


@prepare_app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (UCF101 layout + example.avi).")],
    num_classes: Annotated[int, typer.Option("--num-classes", min=2, max=8, help="Classes (2-8).")] = 6,
    videos_per_class: Annotated[
        int,
        typer.Option(
            "--videos-per-class", min=8, help="Clips per class, in groups of 4; group n is the test set of split n."
        ),
    ] = 16,
    frames: Annotated[int, typer.Option("--frames", min=4, help="Frames per clip (25 fps).")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Rebuild a previous demo in OUT_DIR: remove it first, with the lists and rawframes/ that `tsn prepare"
            " ucf101 OUT_DIR` wrote (nothing else).",
        ),
    ] = False,
    wait: _Wait = False,
    json_out: _Json = False,
) -> None:
    """Write a small synthetic dataset in the exact UCF101 layout, for the quick start and tests.

    Classes differ in what each frame shows (shape, colour, texture), with random position, size, motion, background \
and noise, so a small TSN learns them in minutes on a CPU. Writes UCF-101/<Class>/*.avi (320x240 MJPG), \
ucfTrainTestlist/ (classInd.txt, trainlist0N.txt, testlist0N.txt, CRLF), example.avi and .tsn-demo.json (the \
settings). OUT_DIR must be new or empty; a previous demo there is refused unless --overwrite, an interrupted one \
with the same settings is resumed.

    [bold]Examples[/]

        tsn prepare demo demo_data && tsn prepare ucf101 demo_data --split 1

        tsn prepare demo demo_data --num-classes 8 --videos-per-class 20 --seed 1 --overwrite
    """
    from tsn_cli.prepare.demo import make_demo
    from tsn_cli.ui import console, print_json, table

    def progress(done: int, total: int) -> None:
        if bar.task is None:  # started by the first video: a refused folder shows only the error line
            bar.start(total, "writing demo videos")
        bar.progress.update(bar.task, completed=done, total=total)

    with _Bar(quiet=False) as bar:
        info = make_demo(
            out_dir,
            num_classes=num_classes,
            videos_per_class=videos_per_class,
            frames=frames,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            wait=wait,
            on_wait=_waiting,
        )
    if json_out:
        print_json(info)
        return
    rows = [
        ("folder", info["root"]),
        ("classes", ", ".join(info["classes"])),
        ("videos", info["videos"]),
        ("frames per video", info["frames"]),
    ]
    rows += [(f"split {n}", f"{s['train']} train / {s['test']} test") for n, s in info["splits"].items()]
    rows.append(("example", f"{info['example']} ({info['example_class']})"))
    console.print(table("Demo dataset", ["", "value"], rows, paths=(1,)))
    console.print(f"next: tsn prepare ucf101 {out_dir} --split 1")


@prepare_app.command("check")
def check(
    list_file: Annotated[
        Path, typer.Argument(help="A list file: 'path label' (videos) or 'frame_dir num_frames label' (frames).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="auto, video or frames.")] = "auto",
    data_root: Annotated[
        Optional[Path], typer.Option("--data-root", help="Prefix for relative paths (default: the list's folder).")
    ] = None,
    video_suffix: Annotated[
        str,
        typer.Option(
            "--video-suffix",
            help="Appended to video paths (PaddleVideo UCF101 lists: .avi). Extension-less paths also try .avi/.mp4.",
        ),
    ] = "",
    quick: Annotated[
        bool, typer.Option("--quick", help="Only open each video and decode its first frame (no truncation check).")
    ] = False,
    workers: _Workers = None,
    write_clean: Annotated[
        Optional[Path], typer.Option("--write-clean", help="Write the list without its bad lines to FILE.")
    ] = None,
    video_timeout: VideoTimeoutOpt = None,
    json_out: _Json = False,
) -> None:
    """Check every entry of a list (ours or PaddleVideo's) with the same checks as extraction.

    Videos: exists, non-empty, opens within --video-timeout, every frame decodes, no fewer frames than the \
container's packets give. Frame folders: \
img_00001.jpg..img_N.jpg present with N as listed, no empty/truncated JPEG, first, middle and last frame decode. \
Bad lines and entries are listed; exit code 1 if there are any.

    [bold]Examples[/]

        tsn prepare check data/ucf101/ucf101_train_split_1_videos.txt

        tsn prepare check data/k400/train_frames.list --json

        tsn prepare check old_list.txt --video-suffix .avi --write-clean clean_list.txt
    """
    from tsn_cli.data.budget import set_video_timeout
    from tsn_cli.prepare.check import check_list
    from tsn_cli.ui import console, print_json, table

    set_video_timeout(video_timeout)  # the check's worker processes inherit it
    with _Bar(quiet=False) as bar:
        rep = check_list(
            list_file,
            fmt=fmt,
            data_root=data_root,
            video_suffix=video_suffix,
            full=not quick,
            workers=workers,
            write_clean=write_clean,
            on_result=bar.result,
            on_start=bar.start,
        )
    if json_out:
        print_json(rep.to_dict())
    else:
        rows = [
            ("list", rep.list_file),
            ("format", rep.fmt),
            ("entries", rep.entries),
            ("ok", rep.ok),
            ("bad lines", len(rep.bad_lines)),
            ("bad entries", len(rep.bad)),
        ]
        if rep.clean_file:
            rows.append(("clean list", f"{rep.clean_file} ({rep.clean_rows} rows)"))
        console.print(table("Check", ["", "value"], rows, paths=(1,)))
        # one table per count above, titled with the same words, so the numbers agree
        _render_bad(rep.bad_lines, "Bad lines")
        _render_bad(rep.bad, "Bad entries")
    if rep.exit_code:
        raise typer.Exit(rep.exit_code)
