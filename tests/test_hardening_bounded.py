"""Hardening II (issue 17): crafted and special files are handled in bounded time and memory.

Every case runs the real CLI in a subprocess under a timeout and an address-space limit (`bounded`): before the
fixes these inputs hung (a FIFO, a self-shared pickle), grew to gigabytes (/dev/zero, an alias bomb, a huge
frame_template width, a crafted big-parameter table) or crashed with exit 3 (deep nesting). Each must now stop
with one line naming the file and what is wrong (exit 2), or report the bad item and carry on.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers_data import write_frames, write_video

# Measured VmPeak (address space) of normal runs: a config error 48 MB, `predict` on the tiny export 1.8 GB
# (paddle maps large arenas). The limit is that plus 2 GB: any input that makes tsn allocate gigabytes fails.
ADDRESS_LIMIT = 4 << 30
TIMEOUT = 20  # seconds; a hang (FIFO, exponential walk) never ends, a normal run here takes a few seconds
TIMEOUT_PADDLE = 60  # runs that import paddle: ~10 s on a loaded 2-core CI box, still far from a hang


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))


def bounded(*args, cwd=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    """`python -m tsn_cli ARGS` under the time and address-space bound; bytes output."""
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="2", GLOG_minloglevel="2")
    argv = [a if isinstance(a, bytes) else str(a) for a in args]  # bytes: file names that are not UTF-8
    return subprocess.run([sys.executable, "-m", "tsn_cli", *argv], cwd=cwd, capture_output=True,
                          timeout=timeout, env=env, preexec_fn=_limit)


def one_line_error(p, *needles: str, code: int = 2) -> str:
    """Assert exit `code` with a one-line error (no traceback) containing every needle; returns the line."""
    err = p.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert p.returncode == code, (p.args, p.stdout[-2000:], err[-3000:])
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------------------- 1. configs, tsn.yaml
def test_config_special_files_are_refused(tmp_path):
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    one_line_error(bounded("train", "--config", "/dev/zero"), "/dev/zero", "is a device, not a regular file")
    one_line_error(bounded("train", "--config", fifo), "cfg.fifo", "named pipe")
    one_line_error(bounded("train", "--config", tmp_path), "is a folder")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)  # 2 MB: over the 1 MiB a config can be
    one_line_error(bounded("train", "--config", big), "big.yaml", "more than the 1 MiB")


def test_alias_bomb_nesting_and_huge_values_give_one_short_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]  # 9^10 items
    bomb.write_text("\n".join(levels) + "\nmodel: {depth: *a9}\n")
    line = one_line_error(bounded("train", "--config", bomb), "bomb.yaml:2", "aliases")
    assert len(line) < 200
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: {depth: " + "[" * 100_000 + "}\n")
    one_line_error(bounded("train", "--config", deep), "deep.yaml", "nested too deeply")
    tmpl = tmp_path / "tmpl.yaml"
    tmpl.write_text("data: {frame_template: 'img_{:>3000000000}.jpg'}\n")
    one_line_error(bounded("train", "--config", tmpl), "data.frame_template", "width or precision over 10")
    long = tmp_path / "long.yaml"
    long.write_text("model: {depth: '" + "x" * 500_000 + "'}\n")
    line = one_line_error(bounded("train", "--config", long), "model.depth", "xxx...")
    assert len(line) < 250


def test_numbers_that_cannot_be_right_in_a_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {depth: 18}\n")
    one_line_error(bounded("train", "--config", cfg, "-o", "augment.std=[0,0.2,0.2]"), "augment.std", "> 0")
    one_line_error(bounded("train", "--config", cfg, "-o", "train.lr=.nan"), "train.lr", "finite")
    one_line_error(bounded("train", "--config", cfg, "-o", "augment.short_side=14000"), "augment.short_side",
                   "4096")


def _export_copy(tiny_export, tmp_path) -> Path:
    dst = tmp_path / "export"
    shutil.copytree(tiny_export.dir, dst)
    return dst


def _set_meta(folder: Path, **values) -> None:
    meta = yaml.safe_load((folder / "tsn.yaml").read_text())
    meta.update(values)
    (folder / "tsn.yaml").write_text(yaml.safe_dump(meta))


@pytest.mark.parametrize("values, needles", [
    ({"short_side": 14000}, ["short_side", "4096"]),
    ({"short_side": 0}, ["short_side", "greater than or equal to 8"]),
    ({"target_size": 36}, ["target_size 36 does not match the exported model's input 32x32"]),
    ({"std": [0.2, 0.0, 0.2]}, ["std", "> 0"]),
    ({"crops": 7}, ["crops"]),
])
def test_export_description_is_validated(tiny_export, tmp_path, values, needles):
    model = _export_copy(tiny_export, tmp_path)
    _set_meta(model, **values)
    video = write_video(tmp_path / "v.avi", 8, 64, 48)
    p = bounded("predict", video, "--model", model, "--json", timeout=TIMEOUT_PADDLE)
    one_line_error(p, "tsn.yaml", *needles)
    assert p.stdout == b""


def test_export_description_special_file(tiny_export, tmp_path):
    model = _export_copy(tiny_export, tmp_path)
    (model / "tsn.yaml").unlink()
    os.mkfifo(model / "tsn.yaml")
    video = write_video(tmp_path / "v.avi", 8, 64, 48)
    one_line_error(bounded("predict", video, "--model", model, timeout=TIMEOUT_PADDLE), "tsn.yaml", "named pipe")


# ----------------------------------------------------------------------------------------- 2. weights
def _shared_lists(levels: int) -> list:
    node: list = [0]
    for _ in range(levels):
        node = [node, node]  # pickled once thanks to the memo: the file grows by a few bytes per level
    return node


def test_self_shared_pickle_is_refused_quickly(tiny_export, tmp_path):
    write_video(tmp_path / "v.avi", 8, 64, 48)
    evil = tmp_path / "shared.pdparams"
    evil.write_bytes(pickle.dumps({"backbone.conv1._conv.weight": _shared_lists(80)}, protocol=2))
    assert evil.stat().st_size < 1000
    p = bounded("predict", tmp_path / "v.avi", "--weights", evil, "--config", tiny_export.cfg_file,
                timeout=TIMEOUT_PADDLE)
    one_line_error(p, "shared.pdparams", "refusing to load", "expand")


def test_crafted_big_parameter_table_allocates_nothing(tiny_export, tmp_path):
    write_video(tmp_path / "v.avi", 8, 64, 48)
    cases = {
        # the 173-byte file: parts that are shared nested lists (2^31 values each once made arrays)
        "lists": {"a@@.0": _shared_lists(31), "a@@.1": _shared_lists(31)},
        # small real arrays, but a declared shape of 3 Gi values
        "shape": {"a@@.0": np.zeros(4, np.float32), "a@@.1": np.zeros(4, np.float32)},
    }
    for name, parts in cases.items():
        evil = tmp_path / f"{name}.pdparams"
        table = {"a": {"OriginShape": [3 << 30], "slices": ["a@@.0", "a@@.1"]}}
        evil.write_bytes(pickle.dumps({**parts, "UnpackBigParamInfor@@": table}, protocol=2))
        p = bounded("predict", tmp_path / "v.avi", "--weights", evil, "--config", tiny_export.cfg_file,
                    timeout=TIMEOUT_PADDLE)
        one_line_error(p, f"{name}.pdparams", "refusing to load" if name == "lists" else "split-parameter table")


def test_weights_special_files(tiny_export, tmp_path):
    write_video(tmp_path / "v.avi", 8, 64, 48)
    fifo = tmp_path / "w.pdparams"
    os.mkfifo(fifo)
    for weights, needle in (("/dev/zero", "is a device"), (fifo, "is a named pipe")):
        p = bounded("predict", tmp_path / "v.avi", "--weights", weights, "--config", tiny_export.cfg_file)
        one_line_error(p, str(weights), needle)


# ----------------------------------------------------------------------------------------- 9. non-finite numbers
def test_nan_weights_are_an_error_naming_the_tensor(tiny_export, tmp_path):
    from tsn_cli.model.checkpoint import load_state, save_state

    state = load_state(tiny_export.weights)
    state["head.fc.bias"] = state["head.fc.bias"].copy()
    state["head.fc.bias"][1] = np.nan
    bad = save_state(state, tmp_path / "nan.pdparams")
    video = write_video(tmp_path / "v.avi", 8, 64, 48)
    p = bounded("predict", video, "--weights", bad, "--config", tiny_export.cfg_file, "--json",
                timeout=TIMEOUT_PADDLE)
    one_line_error(p, "nan.pdparams", "head.fc.bias", "NaN")
    assert b"NaN" not in p.stdout


def test_nan_in_an_exported_model_is_an_error_and_json_stays_strict(tiny_export, tmp_path):
    model = _export_copy(tiny_export, tmp_path)
    params = model / "TSN.pdiparams"
    data = params.read_bytes()
    bias = np.zeros(4, np.float32)
    bias[2] = 5.0  # tests/helpers_deploy.py: the FC bias makes class 2 win
    assert data.count(bias.tobytes()) == 1
    params.write_bytes(data.replace(bias.tobytes(), np.full(4, np.nan, np.float32).tobytes()))
    video = write_video(tmp_path / "v.avi", 8, 64, 48)
    p = bounded("predict", video, "--model", model, "--json", timeout=TIMEOUT_PADDLE)
    one_line_error(p, "v.avi", "NaN or infinite")
    assert b"NaN" not in p.stdout


def test_json_output_is_strict():
    from tsn_cli.errors import TsnError
    from tsn_cli.ui import print_json

    with pytest.raises(TsnError, match=r"non-finite number at results\[0\]\.score"):
        print_json({"results": [{"score": np.float32("nan")}]})
    json.loads(json.dumps({"ok": 1.0}, allow_nan=False))


# ----------------------------------------------------------------------------------------- 3. frame folders
def test_special_frames_are_bad_samples_with_their_reason(tiny_export, tmp_path):
    frames = tmp_path / "rawframes"
    for k in range(3):
        write_frames(frames / f"v{k}", 6, 48, 40, seed=k)
    for i in range(1, 7):  # every frame, whichever the sampler picks
        (frames / "v1" / f"img_{i:05}.jpg").unlink()
        (frames / "v1" / f"img_{i:05}.jpg").symlink_to("/dev/zero")
        (frames / "v2" / f"img_{i:05}.jpg").unlink()
        os.mkfifo(frames / "v2" / f"img_{i:05}.jpg")
    lst = tmp_path / "frames.list"
    lst.write_text("".join(f"rawframes/v{k} 6 {k}\n" for k in range(3)))
    p = bounded("prepare", "check", lst, "--json")
    assert p.returncode == 1, p.stderr[-2000:]
    bad = {Path(b["path"]).name: b["reason"] for b in json.loads(p.stdout)["bad"]}
    assert "is a device, not a regular file" in bad["v1"] and "named pipe" in bad["v2"], bad
    p = bounded("eval", "--weights", tiny_export.weights, "--config", tiny_export.cfg_file, "--list", lst,
                "-o", "data.format=frames", "-o", "runtime.workers=0", "--output", tmp_path / "ev", "--json",
                timeout=TIMEOUT_PADDLE)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode in (0, 1) and "Traceback" not in out, out[-3000:]
    assert "named pipe" in out and "is a device" in out, out[-3000:]


# ----------------------------------------------------------------------------------------- 6. terminal escapes
def test_c1_and_undecodable_bytes_never_reach_the_terminal(tiny_export, tmp_path):
    name = os.fsencode(tmp_path) + b"/bad\x9b2J\x1b]0;PWNED\x07\xff.avi"
    with open(name, "wb") as fh:
        fh.write(b"not a video at all" * 10)
    p = bounded(b"predict", name, b"--model", tiny_export.dir, timeout=TIMEOUT_PADDLE)
    both = p.stdout + p.stderr
    assert p.returncode == 1, both[-2000:]
    for raw in (b"\x9b", b"\x1b]", b"\x07", b"\xff.avi"):
        assert raw not in both, (raw, both[-2000:])
    assert b"\\x9b" in both and b"\\xff" in both  # shown, escaped


def test_decoder_log_lines_never_print_raw_escapes(tmp_path):
    from tests.helpers_hardening import make_data

    root = make_data(tmp_path / "d")
    evil = "videos/bad\x1b]0;PWNED\x07\x1b[2J.avi"
    (root / evil).write_bytes(b"not a video at all" * 10)
    with open(root / "train.txt", "a") as fh:
        fh.write(f"{evil} 0\n")
    p = bounded("train", "--config", "cfg.yaml", cwd=root, timeout=TIMEOUT_PADDLE * 2)
    both = p.stdout + p.stderr
    assert b"\x1b]" not in both and b"\x07" not in both, both[-3000:]
    assert b"ERROR opening" not in both  # decord's own log line: noise, the reason is ours
    assert b"not a video" in both, both[-3000:]


def test_sanitiser_handles_c1_and_surrogates():
    from tsn_cli.ui import plain, safe

    assert plain("a\x9bb\x1b[2J") == "a?b?[2J"
    assert plain("x\udc9by") == "x\\x9by" and plain(b"x\x9by") == "x\\x9by"
    assert safe("[red]x\u009b") == "\\[red]x?"


# ----------------------------------------------------------------------------------------- 10. lists
def test_k400_newline_in_youtube_id_never_splits_a_list_line(tmp_path):
    from tests.helpers_prepare import make_k400_tree

    videos, ann = tmp_path / "videos", tmp_path / "ann"
    make_k400_tree(videos, ann, layout="flat")
    evil_id = "ev\nil"
    src = next(videos.glob("tr00-_x_*.mp4"))
    shutil.copy(src, videos / f"{evil_id}_000000_000010.mp4")
    csv = ann / "train.csv"
    csv.write_text(csv.read_text() + f'abseiling,"{evil_id}",0,10,train,0\n')
    # the same clip in val too
    first_train = csv.read_text().splitlines()[1]
    (ann / "validate.csv").write_text((ann / "validate.csv").read_text() + first_train + "\n")
    out = tmp_path / "k400"
    p = bounded("prepare", "k400", videos, "--annotations", ann, "--out", out, "--json")
    rep = json.loads(p.stdout)
    lines = (out / "train.list").read_text().splitlines()
    assert all(len(ln.split()) == 2 and ln.startswith("../videos/") for ln in lines), lines
    assert not any("il_000000" in ln for ln in lines)
    assert any("youtube_id holds control character 0x0a" in b["reason"] for b in rep["bad"]), rep["bad"]
    assert any("both train and val" in w for w in rep["warnings"]), rep["warnings"]


def test_list_writer_refuses_line_breaks(tmp_path):
    from tsn_cli.data.lists import write_list
    from tsn_cli.errors import DataError

    target = tmp_path / "x.list"
    target.write_text("old 0\n")
    for field in ("a\nb", "a\rb", "a\u2028b", "a\x1cb"):
        with pytest.raises(DataError, match="control character"):
            write_list(target, [("good", 0), (field, 1)])
    assert target.read_text() == "old 0\n"


# ----------------------------------------------------------------------------------------- 11. smaller
def test_weights_dev_zero_is_not_file_not_found(tiny_export, tmp_path):
    p = bounded("eval", "--weights", "/dev/zero", "--config", tiny_export.cfg_file)
    line = one_line_error(p, "/dev/zero", "is a device")
    assert "not found" not in line


def test_png_named_jpg_is_read_alike_by_check_and_eval(tmp_path):
    import cv2

    folder = tmp_path / "rawframes" / "v0"
    write_frames(folder, 4, 48, 40)
    img = cv2.imread(str(folder / "img_00002.jpg"))
    ok, png = cv2.imencode(".png", img)
    (folder / "img_00002.jpg").write_bytes(png.tobytes())
    lst = tmp_path / "frames.list"
    lst.write_text("rawframes/v0 4 0\n")
    p = bounded("prepare", "check", lst, "--json")
    assert p.returncode == 0, p.stdout[-2000:]


def test_nan_loss_says_no_checkpoint_exists_and_unreadable_val_videos_are_shown(tmp_path):
    from tests.helpers_hardening import make_data

    root = make_data(tmp_path / "d")
    (root / "val.txt").write_text("videos/c0_v0.avi 0\nvideos/gone.avi 1\n")
    p = bounded("train", "--config", "cfg.yaml", "-o", "train.lr=1e37", cwd=root, timeout=TIMEOUT_PADDLE)
    line = one_line_error(p, "loss is nan", "no checkpoint was saved in out yet")
    assert "is intact" not in line
    p = bounded("train", "--config", "cfg.yaml", "--val-list", "val.txt", "--output", "o2", cwd=root,
                timeout=TIMEOUT_PADDLE)
    err = " ".join(p.stderr.decode().split())  # the line may wrap at the console width
    assert p.returncode == 0, err[-3000:]
    assert "1 validation video(s) unreadable, not scored:" in err and "gone.avi" in err, err[-3000:]


def test_folder_predict_takes_ts_and_extensionless_videos(tiny_export, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.avi", 8, 64, 48)
    shutil.copy(folder / "clip.avi", folder / "noext")  # an AVI without extension: read by content
    shutil.copy(folder / "clip.avi", folder / "stream.ts")  # .ts is a video extension (content decides)
    (folder / "README").write_text("not a video\n")
    p = bounded("predict", folder, "--model", tiny_export.dir, "--json", timeout=TIMEOUT_PADDLE)
    got = {Path(r["path"]).name for r in json.loads(p.stdout) if "error" not in r or r["error"] is None}
    assert got == {"clip.avi", "noext", "stream.ts"}, p.stdout[-2000:]
    assert "skipped 1 file (not a video extension: 1 no extension)" in p.stderr.decode()


# ----------------------------------------------------------------------------------------- 7. concurrent runs
def test_frame_extraction_never_deletes_a_running_extraction(tmp_path):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        write_video(root / cls / f"{cls}1.avi", 6, 48, 40)
    frames = root / "rawframes" / "a"  # a1's frames go to rawframes/a/a1
    live = frames / f".a1.tmp-{os.getpid()}-test"  # another run still writing a1: must be left alone
    dead = frames / ".a1.tmp-999999999-test"  # from a killed run: removed
    for d in (live, dead):
        d.mkdir(parents=True)
        (d / "img_00001.jpg").write_bytes(b"partial")
    p = bounded("prepare", "folder", root, "--frames", "--val", "0.5", "--workers", "1", "--json")
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert live.is_dir() and (live / "img_00001.jpg").read_bytes() == b"partial"
    assert not dead.exists()
    assert len(list((frames / "a1").glob("img_*.jpg"))) == 6


# ----------------------------------------------------------------------------------------- 8. stale outputs
def test_frames_are_extracted_again_when_the_settings_change(tmp_path):
    import cv2

    root = tmp_path / "ds"
    for cls in ("a", "b"):
        write_video(root / cls / f"{cls}1.avi", 6, 64, 48)
    args = ["prepare", "folder", root, "--frames", "--val", "0.5", "--workers", "1", "--json"]
    p = bounded(*args)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    frame = root / "rawframes" / "a" / "a1" / "img_00001.jpg"
    assert cv2.imread(str(frame)).shape[:2] == (48, 64)
    p = bounded(*args)  # same settings: kept
    assert json.loads(p.stdout)["extraction"]["existing"] == 2
    p = bounded(*args, "--short-side", "32", "--jpeg-quality", "50")
    rep = json.loads(p.stdout)
    assert p.returncode == 0 and rep["extraction"]["extracted"] == 2, rep
    assert any("short_side None -> 32, jpeg_quality 95 -> 50" in w for w in rep["warnings"]), rep["warnings"]
    assert cv2.imread(str(frame)).shape[:2] == (32, 43)  # PaddleVideo rounding of 64x48 to short side 32
    assert not [x for x in (root / "rawframes").rglob("*") if ".tmp-" in x.name]
    p = bounded(*args, "--short-side", "32", "--jpeg-quality", "50")
    assert json.loads(p.stdout)["extraction"]["existing"] == 2


def test_predict_model_applies_or_refuses_config_by_name(tiny_export, tmp_path):
    video = write_video(tmp_path / "v.avi", 8, 64, 48)
    base = ["predict", video, "--model", tiny_export.dir, "--json"]

    def score(*extra):
        p = bounded(*base, *extra, timeout=TIMEOUT_PADDLE)
        assert p.returncode == 0, p.stderr.decode()[-3000:]
        return json.loads(p.stdout)[0]["top_k"][0]["score"]

    views_by_flags = score("--crops", "3", "--seg-num", "2")
    by_override = score("--override", "eval.crops=3", "--override", "eval.seg_num=2")
    assert by_override == views_by_flags != score()  # applied, not ignored
    one_line_error(bounded(*base, "--override", "augment.short_side=64", timeout=TIMEOUT_PADDLE),
                   "-o augment.short_side=64", "differs from the export's 40")
    cfg = tmp_path / "c.yaml"  # the export's own preprocessing and training-only keys: fine; eval.* applied
    cfg.write_text("augment: {short_side: 40, target_size: 32, scales: [1.0]}\neval: {crops: 3, seg_num: 2}\n")
    assert score("--config", cfg) == views_by_flags


def test_csv_and_dataset_readers_refuse_special_files(tmp_path):
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    one_line_error(bounded("prepare", "csv", fifo, "--root", tmp_path), "rows.csv", "named pipe")
    one_line_error(bounded("prepare", "csv", "/dev/zero", "--root", tmp_path), "/dev/zero", "is a device")
    spec = tmp_path / "ds"
    spec.mkdir()
    (spec / "dataset.yaml").write_text("a: &a [1, 2]\nb: *a\n")
    one_line_error(bounded("train", "--data", spec), "dataset.yaml:2", "aliases")
