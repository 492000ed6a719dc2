"""The synthetic demo dataset: exact UCF101 layout, CRLF, disjoint groups, determinism, learnable classes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tsn_cli.cli.prepare import prepare_app
from tsn_cli.errors import TsnError
from tsn_cli.prepare.demo import make_demo
from tsn_cli.prepare.runner import PrepareOptions
from tsn_cli.prepare.ucf101 import prepare_ucf101


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    info = make_demo(out, num_classes=5, videos_per_class=12, frames=8, seed=3)
    return out, info


def test_layout_and_split_files(demo):
    out, info = demo
    classes = info["classes"]
    assert len(classes) == 5 and info["videos"] == 60 and sorted(info["splits"]) == [1, 2]
    ci = (out / "ucfTrainTestlist" / "classInd.txt").read_bytes()
    assert ci == "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)).encode()
    for n in (1, 2):
        train = (out / "ucfTrainTestlist" / f"trainlist{n:02d}.txt").read_bytes().decode()
        test = (out / "ucfTrainTestlist" / f"testlist{n:02d}.txt").read_bytes().decode()
        assert train.endswith("\r\n") and "\n" not in train.replace("\r\n", "")
        tr = [ln.split() for ln in train.splitlines()]
        te = [ln for ln in test.splitlines()]
        assert len(tr) == 40 and len(te) == 20 and all(len(t) == 2 for t in tr)
        for rel, label in tr:
            cls, name = rel.split("/")
            assert name == f"v_{cls}_g{name.split('_g')[1]}" and name.endswith(".avi")
            assert int(label) == classes.index(cls) + 1
            assert (out / "UCF-101" / rel).is_file()
        groups = lambda rels: {r.split("_g")[1][:2] for r in rels}  # noqa: E731
        assert groups([t[0] for t in tr]).isdisjoint(groups(te)) and groups(te) == {f"{n:02d}"}
    assert Path(info["example"]).is_file() and info["example_class"] in classes
    assert not (out / "ucfTrainTestlist" / "trainlist03.txt").exists()


def test_videos_are_readable_320x240(demo):
    import decord

    out, info = demo
    vr = decord.VideoReader(info["example"])
    assert len(vr) == 8 and vr[0].shape == (240, 320, 3)
    vr = decord.VideoReader(str(next((out / "UCF-101").rglob("*.avi"))))
    assert len(vr) == 8


def test_deterministic_for_a_seed(tmp_path):
    def digest(root: Path) -> dict:
        return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    a = digest(Path(make_demo(tmp_path / "a", num_classes=2, videos_per_class=8, frames=4, seed=1)["root"]))
    b = digest(Path(make_demo(tmp_path / "b", num_classes=2, videos_per_class=8, frames=4, seed=1)["root"]))
    c = digest(Path(make_demo(tmp_path / "c", num_classes=2, videos_per_class=8, frames=4, seed=2)["root"]))
    assert a == b and a != c


def test_classes_are_learnable_from_single_frames(demo):
    """A nearest-centroid classifier on a colour histogram of ONE frame per video already separates the
    classes (so a TSN can), while clips of a class are not copies of each other (random variation)."""
    import cv2

    from tsn_cli.data.probe import open_capture

    out, info = demo
    classes = info["classes"]

    def feat(path: Path, idx: int) -> np.ndarray:
        cap = open_capture(str(path))
        for _ in range(idx + 1):
            ok, frame = cap.read()
        cap.release()
        hsv = cv2.cvtColor(cv2.GaussianBlur(frame, (5, 5), 0), cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(int)
        # hue histogram of the bright, saturated pixels (+1 bin for bright grey/white): the object's colour
        # family, independent of position, size and the random background
        vivid = hsv[(hsv[:, 1] >= 140) & (hsv[:, 2] >= 165)]
        hist = np.bincount(vivid[:, 0] // 6, minlength=30).astype(float)
        white = ((hsv[:, 1] < 50) & (hsv[:, 2] >= 200)).sum()
        hist = np.append(hist, white)
        return hist / (hist.sum() + 1e-6)

    split = out / "ucfTrainTestlist"
    train = [ln.split() for ln in (split / "trainlist01.txt").read_text().splitlines()]
    test = (split / "testlist01.txt").read_text().splitlines()
    cents = {}
    for rel, label in train:
        cents.setdefault(int(label) - 1, []).append(feat(out / "UCF-101" / rel, 0))
    cents = {k: np.mean(v, 0) for k, v in cents.items()}
    correct = 0
    for rel in test:
        f = feat(out / "UCF-101" / rel, 5)
        pred = min(cents, key=lambda k: np.abs(cents[k] - f).sum())
        correct += classes[pred] == rel.split("/")[0]
    assert correct / len(test) >= 0.9
    # variation: two clips of one class differ
    p1, p2 = sorted((out / "UCF-101" / classes[0]).glob("*.avi"))[:2]
    assert not np.allclose(feat(p1, 0), feat(p2, 0), atol=1e-3) or p1.read_bytes() != p2.read_bytes()


def test_prepare_ucf101_runs_on_demo(demo, tmp_path):
    out, info = demo
    rep = prepare_ucf101(out, splits=[1], opts=PrepareOptions(out=tmp_path, workers=1, verify=True))
    assert rep.exit_code == 0 and rep.ok == 60
    assert len((tmp_path / "ucf101_train_split_1_videos.txt").read_text().splitlines()) == 40


def test_bad_arguments(tmp_path):
    with pytest.raises(TsnError, match="num-classes"):
        make_demo(tmp_path, num_classes=9)
    with pytest.raises(TsnError, match="videos-per-class"):
        make_demo(tmp_path, videos_per_class=4)


def test_cli_demo(tmp_path):
    res = CliRunner().invoke(prepare_app, ["demo", str(tmp_path / "d"), "--num-classes", "2", "--videos-per-class", "8",
                                           "--frames", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert '"example_class"' in res.stdout
    assert (tmp_path / "d" / "UCF-101").is_dir() and (tmp_path / "d" / "example.avi").is_file()
