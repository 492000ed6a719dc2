"""The `tsn` command line: parses arguments, calls the library (`tsn_cli.*`) and renders results.

Every command lives in its own module here; this one assembles the Typer app and turns `TsnError` into a
one-line message with the error's exit code (a traceback only with `--debug`).
"""

from __future__ import annotations

import sys

import typer

from tsn_cli import __version__
from tsn_cli.errors import TsnError

app = typer.Typer(
    name="tsn",
    help="Train, evaluate, export and serve TSN (Temporal Segment Networks) video classifiers on PaddlePaddle.\n\n"
    "Typical use: tsn prepare ucf101 data/ucf101 ; tsn train --config configs/tsn_ucf101_videos.yaml ; "
    "tsn eval --weights output/TSN_ucf101/TSN_best.pdparams ; tsn export ... ; tsn predict video.avi --model DIR",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tsn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """TSN video classification: prepare -> train -> eval -> export -> predict."""
    _state["debug"] = debug


def _register() -> None:
    from tsn_cli.cli import evaluate, export, predict, train

    try:
        from tsn_cli.cli.prepare import prepare_app
    except ImportError:  # pragma: no cover - only while the prepare commands are being written
        prepare_app = None
    if prepare_app is not None:
        app.add_typer(
            prepare_app, name="prepare", help="Build file lists and extract frames (UCF101, Kinetics-400, demo)."
        )
    app.command("train")(train.train)
    app.command("eval")(evaluate.evaluate)
    app.command("export")(export.export)
    app.command("predict")(predict.predict)
    from tsn_cli.cli.weights import weights_app

    app.add_typer(
        weights_app, name="weights", help="Known pretrained weights (names, URLs, cache) and what a checkpoint holds."
    )


_register()


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions that led to `exc`."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 10:
        if isinstance(e, KeyboardInterrupt):
            return True
        e, seen = (e.__cause__ or e.__context__), seen + 1
    return False


def _say_interrupted() -> None:
    from tsn_cli.ui import err_console

    err_console.print("[yellow]interrupted[/]")


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv[1:]
    from tsn_cli.errors import remember_interrupts

    remember_interrupts()
    try:
        app(prog_name="tsn")
    except TsnError as exc:
        if debug:
            raise
        from tsn_cli.ui import err_console, safe

        err_console.print(f"[bold red]error:[/] {safe(exc)}", soft_wrap=True)  # one line, however long
        sys.exit(exc.exit_code)
    except OSError as exc:
        # A folder or file the user pointed at cannot be written (read-only disk, a file in the way, disk full):
        # the user's environment, not a bug, so one plain line and exit 2.
        if debug:
            raise
        from tsn_cli.ui import err_console, safe

        where = exc.filename or ""
        err_console.print(
            f"[bold red]error:[/] cannot write {safe(where)}: {safe(exc.strerror or exc)}", soft_wrap=True
        )
        sys.exit(2)
    except KeyboardInterrupt:
        _say_interrupted()
        sys.exit(130)
    except SystemExit as exc:
        # Typer turns a Ctrl-C it sees into a silent exit 130 (`Exit(130) from KeyboardInterrupt`): say it, as
        # above (a command that handled the interrupt itself, such as train, exits 130 without one)
        if exc.code == 130 and _caused_by_interrupt(exc):
            _say_interrupted()
        raise
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if debug:
            raise
        from tsn_cli.ui import err_console, safe

        err_console.print(
            f"[bold red]error:[/] {safe(type(exc).__name__)}: {safe(str(exc).splitlines()[0] if str(exc) else '')} "
            "(run with --debug for the traceback)",
            soft_wrap=True,
        )
        sys.exit(3)
