"""A checkpoint write that fails midway (disk full) is a clear error and leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import pathlib

import numpy as np
import pytest

from tests.helpers_train import make_tiny_data, weights, write_tiny_config

pytestmark = pytest.mark.faults


def test_enospc_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from tsn_cli.config import load_config
    from tsn_cli.engine.checkpoints import find_latest_checkpoint
    from tsn_cli.engine.train import Trainer
    from tsn_cli.errors import TsnError

    data = make_tiny_data(tmp_path / "data")
    out = tmp_path / "out"
    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", data, out, epochs=2, batch_size=6))
    real_write = pathlib.Path.write_bytes

    def failing_write(self, blob):
        if "TSN_epoch_00002.pdopt" in self.name:  # half the optimizer file, then the disk is full
            real_write(self, blob[: len(blob) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, blob)

    monkeypatch.setattr(pathlib.Path, "write_bytes", failing_write)
    with pytest.raises(TsnError, match=r"cannot write .*TSN_epoch_00002\.pdopt.*disk full.*previous file is intact"):
        Trainer(cfg).run()
    assert not list(out.glob(".*.tmp"))  # no half-written temp file left
    assert not (out / "TSN_epoch_00002.pdopt").exists() and not (out / "TSN_epoch_00002.state.json").exists()
    assert find_latest_checkpoint(out) == out / "TSN_epoch_00001.pdparams"
    w1 = weights(out / "TSN_epoch_00001.pdparams")
    assert all(np.isfinite(v).all() for v in w1.values())

    # the disk has room again: resume (a second model in this process -> other parameter names) finishes
    monkeypatch.setattr(pathlib.Path, "write_bytes", real_write)
    res = Trainer(cfg, resume="auto").run()
    assert res.epochs_done == 2 and (out / "TSN_epoch_00002.state.json").is_file()
    assert not np.array_equal(weights(out / "TSN_epoch_00002.pdparams")["head.fc.weight"], w1["head.fc.weight"])
