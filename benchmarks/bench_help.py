"""Start-up cost of help and completion: `tsn --help`, `tsn train --help` and shell completion vs `import typer, rich`.

Each command runs in a fresh interpreter (as a user's shell starts it), N times; the script prints the median wall
time of each and its ratio to the bare `python -c "import typer, rich"`. Target: help and completion within 2x of
that import. For scale, the same is measured for a minimal Typer app (two commands of one option, rich help): what
any Typer CLI pays before its own code (a subcommand's help makes Typer import pydantic to coerce the root options).

    python benchmarks/bench_help.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINIMAL_APP = """import typer
app = typer.Typer(rich_markup_mode="rich")
@app.command()
def train(epochs: int = 1):
    "Train."
@app.command()
def predict(top_k: int = 5):
    "Predict."
app()
"""
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def cpu_line() -> str:
    """'cpu: <model>, N cores, flags avx avx2 ...' (the SIMD flags that matter for Paddle's kernels)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model is all we can say cheaply
        import platform

        model = platform.processor() or platform.machine()
    shown = " ".join(f for f in SIMD_FLAGS if f in flags) or "-"
    return f"cpu: {model}, {os.cpu_count()} cores, flags {shown}"


def _children_cpu() -> float:
    """CPU seconds (user + system) used by this process's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of `argv` in a fresh process (output discarded; a failure stops the benchmark).
    CPU time moves less than wall time when other work shares the cores; wall time is what a user waits."""
    c, t = _children_cpu(), time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, so run where this checkout's tsn_cli is
    subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t, _children_cpu() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per command (median taken)")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    tsn = [sys.executable, "-m", "tsn_cli"]  # this checkout's tsn, as the `tsn` script runs it
    complete = dict(env, _TSN_COMPLETE="complete_bash", COMP_WORDS="tsn train --se", COMP_CWORD="2")
    minimal = Path(tempfile.mkdtemp(prefix="tsn-bench-help-")) / "minimal_typer_app.py"
    minimal.write_text(MINIMAL_APP)
    cases = [
        ('python -c "import typer, rich"', [sys.executable, "-c", "import typer, rich"], env),
        ("minimal Typer app --help", [sys.executable, str(minimal), "--help"], env),
        ("minimal Typer app train --help", [sys.executable, str(minimal), "train", "--help"], env),
        ("tsn --help", [*tsn, "--help"], env),
        ("tsn train --help", [*tsn, "train", "--help"], env),
        ("tsn eval --help", [*tsn, "eval", "--help"], env),
        ("completion: tsn train --se<TAB>", tsn, complete),
    ]
    print(cpu_line())
    print(f"python {sys.version.split()[0]}; median of {args.runs} runs each, fresh process per run")
    print(f"load average {os.getloadavg()[0]:.1f} (busy cores make wall times noisy; CPU times much less)\n")
    print(f"{'command':34} {'wall s':>7} {'ratio':>7} {'CPU s':>7} {'ratio':>7}")
    for _, argv, e in cases:
        run_once(argv, e)  # warm the file cache
    # round robin: every case sees the same moments of a busy machine, so the ratios stay comparable
    times = [[run_once(argv, e) for _, argv, e in cases] for _ in range(args.runs)]
    base = None
    for i, (name, _, _) in enumerate(cases):
        wall = statistics.median(run[i][0] for run in times)
        cpu = statistics.median(run[i][1] for run in times)
        base = base or (wall, cpu)
        print(f"{name:34} {wall:7.3f} {wall / base[0]:6.2f}x {cpu:7.3f} {cpu / base[1]:6.2f}x")
    minimal.unlink()
    minimal.parent.rmdir()
    print("\ntarget: tsn's ratios <= 2x (the import of typer + rich is 1.00x by definition)")


if __name__ == "__main__":
    main()
