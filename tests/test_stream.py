"""glassgem predict on live streams (glassgem.inference.stream): a local file opened as a stream (file: URL, played at
its frame rate), newest frames scored, the others dropped and counted, masks equal to the photo path's of those
frames, --max-frames/--every, the mailbox, and bad sources as one line."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import av  # the video extra, part of the dev extra that `make test` installs
import numpy as np
import pytest
import torch
from PIL import Image

from glassgem.cli import main
from glassgem.inference.predictor import Predictor
from glassgem.inference.stream import LatestFrame, RateMeter, is_stream, predict_stream, stream_name

FPS = 20


def _clip(path: Path, n: int = 16, h: int = 48, w: int = 64) -> Path:
    y, x = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.height, s.width, s.pix_fmt = h, w, "yuv420p"
        for i in range(n):
            img = np.stack([60 + 0 * x, 255 * y / h, 255 * x / w], axis=-1).astype(np.uint8)
            img[h // 4 : h // 2, 3 * i : 3 * i + w // 3, 0] = 230
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


class SlowRedScorer:
    """Glass where the red channel > 127.5, taking `delay` seconds per call (a network slower than the camera)."""

    input_size = 64

    def __init__(self, delay: float) -> None:
        self.delay, self.calls = delay, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay)
        return torch.stack([torch.full_like(images[:, 0], 127.5), images[:, 0]], dim=1)


def test_stream_sources_and_names():
    assert all(is_stream(s) for s in ("/dev/video0", "rtsp://cam.local:554/live", "HTTP://x/y.mjpg", "file:clip.mp4"))
    assert not any(is_stream(s) for s in ("clip.mp4", "photos/", "ftp://x/y", "C:/videos/a.mp4"))
    assert [
        stream_name(s) for s in ("/dev/video0", "rtsp://cam.local:554/live/main?x=1", "http://cam/", "file:a/b.mp4")
    ] == ["video0", "main", "stream", "b"]


def test_a_slow_network_gets_the_newest_frames_and_drops_the_rest(tmp_path):
    clip = _clip(tmp_path / "clip.mp4")
    frames = _decoded(clip)
    scorer = SlowRedScorer(delay=0.12)  # ~6 frames/s against a 20 frames/s source
    summary = predict_stream(f"file:{clip}", "cam", tmp_path / "out", scorer, 64, progress=False)
    assert summary.error is None and summary.received == len(frames) == 16
    assert summary.dropped > 0 and summary.frames + summary.dropped == summary.received
    written = sorted(int(p.stem) for p in (tmp_path / "out" / "cam").glob("*.png"))
    assert len(written) == summary.frames == scorer.calls and written[-1] == 15  # the last frame is never lost
    with open(tmp_path / "out" / "cam" / "frames.csv", newline="") as f:
        assert [int(r["frame"]) for r in csv.DictReader(f)] == written
    for index in written:  # each mask is the photo path's mask of the decoded frame with that index
        want = Predictor(SlowRedScorer(0), size=64).predict(frames[index]).astype(np.uint8) * 255
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "cam" / f"{index:06d}.png")), want)


def test_max_frames_every_and_the_command_line(tmp_path, capsys):
    clip = _clip(tmp_path / "clip.mp4")
    summary = predict_stream(
        f"file:{clip}",
        "cam",
        tmp_path / "out",
        SlowRedScorer(0),
        64,
        every=4,
        max_frames=3,
        overlay=True,
        progress=False,
    )
    written = sorted(int(p.stem) for p in (tmp_path / "out" / "cam").glob("??????.png"))
    assert summary.frames == 3 and len(written) == 3 and all(i % 4 == 0 for i in written)
    assert len(list((tmp_path / "out" / "cam").glob("*_overlay.jpg"))) == 3
    weights = _debug_weights(tmp_path)
    assert (
        main(
            [
                "predict",
                f"file:{clip}",
                "--out",
                str(tmp_path / "cli"),
                "--weights",
                weights,
                "--max-frames",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "frames/s" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "clip").glob("*.png"))) == 2
    assert (
        main(["predict", f"file:{tmp_path / 'missing.mp4'}", "--out", str(tmp_path / "x"), "--weights", weights]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.mp4" in err and "cannot open this stream" in err
    assert main(["predict", f"file:{clip}", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err


def _debug_weights(tmp_path: Path) -> str:
    from glassgem import GEM

    torch.manual_seed(0)
    return str(GEM.from_config("debug").save_pretrained(tmp_path / "debug"))


def test_latest_frame_drops_waiting_frames_and_close_wakes_the_reader():
    box = LatestFrame()
    for i in range(3):
        box.put(i)
    assert box.take(timeout=0.1) == 2 and (box.received, box.dropped) == (3, 2)
    assert box.take(timeout=0.05) is None
    got = []
    waiter = threading.Thread(target=lambda: got.append(box.take(timeout=10)))
    waiter.start()
    box.put("next")
    waiter.join(timeout=5)
    assert got == ["next"]
    box.put("last")
    box.close()
    assert box.take(timeout=0.05) == "last" and box.take(timeout=5) is None  # closed: returns at once


def test_rate_meter_reports_once_per_period():
    now = [0.0]
    meter = RateMeter(period=2.0, clock=lambda: now[0])
    rates = []
    for _ in range(10):
        now[0] += 0.5
        rates.append(meter.tick())
    assert rates[:3] == [None] * 3 and rates[3] == pytest.approx(2.0) and rates[7] == pytest.approx(2.0)
    assert sum(r is not None for r in rates) == 2
