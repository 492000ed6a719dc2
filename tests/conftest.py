"""Shared test fixtures: the `tsn` CLI runner, paddle on the CPU, and the tiny exported model."""

from __future__ import annotations

import os

import pytest

from tests.helpers_cli import run_tsn

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GLOG_minloglevel", "2")


@pytest.fixture(scope="session")
def tsn():
    return run_tsn


@pytest.fixture(scope="session")
def paddle():
    """Paddle imported the way tsn does it (threads set, start-up noise silenced), on the CPU."""
    from tsn_cli.runtime import import_paddle

    p = import_paddle()
    p.set_device("cpu")
    return p


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """The tiny model (tests/helpers_deploy.py) exported with ONNX once for the whole session; shared, so it
    must stay as exported -- checked when the session ends."""
    from tests.helpers_deploy import export_tiny, folder_digest  # here: numpy loads after the thread caps above

    exp = export_tiny(tmp_path_factory.mktemp("tiny_export"))
    before = folder_digest(exp.dir)
    yield exp
    assert folder_digest(exp.dir) == before, f"a test changed the shared export {exp.dir}; copy it first"
