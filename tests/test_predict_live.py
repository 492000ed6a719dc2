"""`tsn predict http://...`: a live MJPEG stream served by the test on 127.0.0.1 from a real demo clip, dropped
once mid-way and then gone: JSON Lines of rolling predictions naming the clip's class, a message per reconnect,
and a closing summary; a stream that never answers is a one-line error."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers_timeline import build_demo_model


class _Mjpeg(BaseHTTPRequestHandler):
    """Connection 1 sends 40 frames and drops; connection 2 sends 60 and drops; later ones get a 503. Frames are
    `pause` seconds apart (25 frames/s, a camera's rate: the tiny model keeps up even on a loaded machine)."""

    frames: list = []
    plan = [40, 60]
    pause = 0.04
    calls = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        cls = type(self)
        n = cls.plan[cls.calls] if cls.calls < len(cls.plan) else 0
        cls.calls += 1
        if not n:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(n):
            jpg = cls.frames[i % len(cls.frames)]
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                             + jpg + b"\r\n")
            self.wfile.flush()
            time.sleep(cls.pause)
        self.close_connection = True  # the drop

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("live_demo"))


@pytest.fixture
def stream(demo):
    import cv2

    from tsn_cli.data.video import open_source

    clip = demo.test_clips[demo.classes[2]][0]
    with open_source(str(clip), "video") as src:
        rgb = src.get(range(src.num_frames))
    _Mjpeg.frames = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in rgb]
    _Mjpeg.calls, _Mjpeg.plan, _Mjpeg.pause = 0, [40, 60], 0.04
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Mjpeg)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/stream.mjpg"
    srv.shutdown()


def test_live_mjpeg_stream_with_a_dropped_connection(demo, stream, tsn):
    """40 + 60 frames over two connections: every window of 16 frames every 8 is predicted (11), each names the
    streamed class; the drop is retried with a message; the run ends with a summary line."""
    r = tsn("predict", stream, "--model", demo.dir, "--window", "16f", "--stride", "8f", "--reconnect", "2",
            "--json", check=True)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    preds, summary = lines[:-1], lines[-1]["summary"]
    assert summary["frames"] == 100 and summary["predictions"] == len(preds) == (100 - 16) // 8 + 1
    assert [p["frame"] for p in preds] == list(range(16, 101, 8))
    assert all(p["top_k"][0]["label"] == demo.classes[2] for p in preds), preds
    assert all(p["latency_ms"] >= 0 and set(p) == {"index", "frame", "time", "top_k", "latency_ms", "fps", "dropped"}
               for p in preds)
    assert summary["dropped_frames"] == summary["skipped_windows"] == 0
    assert "stream dropped; reconnecting (1/2)" in r.stderr and "reconnecting (2/2)" in r.stderr
    assert summary["reconnects"] == 3 and summary["ended"] == "stream lost; 2 reconnect attempts failed"
    assert "Traceback" not in r.stderr and "Stream ends prematurely" not in r.stderr


def test_live_table_and_unreachable_stream(demo, stream, tsn):
    """Without --json: the Live panel ends with a summary table; a port where nothing listens is one line."""
    r = tsn("predict", stream, "--model", demo.dir, "--window", "16f", "--stride", "8f", "--reconnect", "1",
            check=True)
    assert "Live summary" in r.stdout and demo.classes[2] in r.stdout and "predictions" in r.stdout
    r = tsn("predict", "http://127.0.0.1:9/none.mjpg", "--model", demo.dir, "--window", "16f", "--stride", "8f")
    assert r.returncode == 1 and "cannot open the stream" in r.stderr and "Traceback" not in r.stderr
    r = tsn("predict", stream, "clip.avi", "--model", demo.dir)
    assert r.returncode == 2 and "live source" in r.stderr


def test_live_model_slower_than_the_stream_drops_frames(demo, stream, tsn):
    """600 frames at 200 frames/s (3 s) and a model made slow (10 crops, 8 segments, a prediction per frame): the
    reader keeps up with the stream, frames that arrive while the model is busy are dropped from the buffer's
    backlog and counted, windows that lost a frame are skipped (counted), the last prediction is the stream's
    latest window, and the latency stays bounded by the buffer's span plus the model's work on it -- a reader
    that queued every frame would be seconds behind by the end of the stream."""
    _Mjpeg.plan, _Mjpeg.pause = [600], 0.005
    r = tsn("predict", stream, "--model", demo.dir, "--window", "16f", "--stride", "1f", "--seg-num", "8",
            "--crops", "10", "--reconnect", "0", "--json", check=True)
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    preds, summary = lines[:-1], lines[-1]["summary"]
    assert summary["frames"] == 600 and summary["ended"] == "end of stream", summary
    assert summary["dropped_frames"] > 0 and summary["skipped_windows"] > 0, summary
    assert summary["predictions"] == len(preds) and len(preds) + summary["skipped_windows"] == 600 - 16 + 1
    frames = [p["frame"] for p in preds]
    assert frames == sorted(set(frames)) and frames[-1] == 600, frames
    assert [p["dropped"] for p in preds] == sorted(p["dropped"] for p in preds)
    assert all(p["top_k"][0]["label"] == demo.classes[2] for p in preds)
    lat = [p["latency_ms"] for p in preds]
    assert summary["latency_ms_max"] == max(lat) < 0.5 * 1000 * summary["seconds"], (summary, lat)
