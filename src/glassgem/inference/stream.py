"""Glass masks for live streams: `glassgem predict rtsp://camera/live --out out/ --max-frames 100`.

A stream is a V4L2 device (/dev/video0), a network URL FFmpeg reads (rtsp://, rtsps://, rtmp://, http://,
https://, udp://, tcp://, srt://), or a local file given as a `file:` URL, which is played at its own frame
rate as a camera would deliver it. PyAV (the `video` extra) decodes it in a reader thread into a one-slot
mailbox (LatestFrame): when the network is slower than the source, frames waiting there are replaced by
newer ones (dropped, counted) instead of queueing up, so every mask is of a recent frame.

Outputs, for a stream named `name` (the device or the URL's last path part): `name/<frame>.png` masks
(the number is the frame's index in the stream), `name/<frame>_overlay.jpg` with --overlay,
`name/<frame>_prob.png` with --save-prob, and `name/frames.csv` (frame, time_s, glass_fraction) written
at the end, also after Ctrl-C.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError, GlassgemError
from ..io import atomic_write_text
from .files import FRAMES_CSV, write_outputs
from .predictor import as_predictor
from .threads import decode_threads
from .video import check_frame_options, frame_name, frames_csv_text, require_av

SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def is_stream(text: str) -> bool:
    """A live source: a V4L2 device, a network URL, or a file: URL (a local file read as a stream)."""
    m = re.match(r"^([a-z][a-z0-9+.-]*)://", text.lower())
    return bool(m and m.group(1) in SCHEMES) or text.startswith("file:") or text.startswith("/dev/video")


def stream_name(text: str) -> str:
    """The output folder's name: the URL's or device's last path part (no query, no extension), or 'stream'."""
    path = re.sub(r"^[a-z][a-z0-9+.-]*:(//[^/]*)?", "", text.split("?")[0], flags=re.I)
    last = path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", last).strip("_")
    return name or "stream"


class LatestFrame:
    """A one-slot mailbox between a producer (a stream reader, a ROS subscription) and the inference thread:
    put() replaces a frame that is still waiting (counted in `dropped`), take() waits for the newest one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            self.received += 1
            self.dropped += self._full
            self._item, self._full = item, True
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Any:
        """The newest frame; None after `timeout` seconds without one, or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self.closed, timeout) or not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """No more frames: a waiting take() returns (the last frame, if one waits, is still taken)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class RateMeter:
    """Frames/s over the last `period` seconds: tick() once per processed frame."""

    def __init__(self, period: float = 5.0, clock=time.monotonic) -> None:
        self.period, self.clock = period, clock
        self.start = clock()
        self.count = 0

    def tick(self) -> float | None:
        """Count a frame; -> the rate of the period that just ended, or None while it runs."""
        self.count += 1
        elapsed = self.clock() - self.start
        if elapsed < self.period:
            return None
        rate = self.count / elapsed if elapsed > 0 else 0.0
        self.start, self.count = self.clock(), 0
        return rate


@dataclass
class StreamSummary:
    source: str
    out: str
    frames: int = 0  # scored and written
    received: int = 0  # offered to the network (every --every-th decoded frame)
    dropped: int = 0  # of those, replaced by a newer frame before the network was free
    seconds: float = 0.0
    error: str | None = None

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        status = f"; stopped: {self.error}" if self.error else ""
        return (
            f"{self.source}: {self.frames} frame mask(s) in {self.out} in {self.seconds:.1f} s ({rate:.2f} "
            f"frames/s; {self.dropped} of {self.received} frames dropped while the network was busy){status}"
        )


def _open(source: str):
    av = require_av()
    options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp") else {}
    fmt = "v4l2" if source.startswith("/dev/video") else None
    try:
        container = av.open(source, format=fmt, options=options, timeout=10.0)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{source}: cannot open this stream ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{source}: no video stream")
    return container


def _read(container, box: LatestFrame, stop: threading.Event, every: int, paced: bool, failure: list[str]) -> None:
    """Reader thread: decode frames into `box` until the stream ends or `stop` is set; pace a file: URL."""
    av = require_av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        stream.thread_count = decode_threads()
    except (AttributeError, ValueError):
        pass
    start = time.monotonic()
    try:
        for index, frame in enumerate(container.decode(stream)):
            if stop.is_set():
                break
            t = float(frame.time) if frame.time is not None else 0.0
            if paced and (wait := start + t - time.monotonic()) > 0:
                time.sleep(wait)
            if index % every == 0:
                box.put((index, t, frame.to_ndarray(format="rgb24")))
    except av.FFmpegError as e:
        failure.append(f"cannot decode the stream ({e})")
    finally:
        box.close()


def predict_stream(
    source: str,
    name: str,
    out,
    scorer,
    size: int | None = None,
    save_prob: bool = False,
    overlay: bool = False,
    threshold: float | None = None,
    every: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
) -> StreamSummary:
    """Masks for a live stream's frames, newest first when the network falls behind (module doc), until the
    stream ends, `max_frames` masks are written, or Ctrl-C. `scorer`: a glassgem.Predictor, or what one is made
    of with `size` and `threshold`. Raises DataError for a source that cannot be opened."""
    check_frame_options(every, max_frames)
    predictor = as_predictor(scorer, size, threshold)
    out_dir = out / name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GlassgemError(f"--out {out}: cannot create {out_dir} ({e.strerror or e})") from None
    container = _open(source)
    box, stop = LatestFrame(), threading.Event()
    failure: list[str] = []  # the reader thread's error, if it stopped on one
    reader = threading.Thread(
        target=_read,
        args=(container, box, stop, every, source.startswith("file:"), failure),
        name="glassgem-stream",
        daemon=True,
    )
    summary = StreamSummary(source, str(out_dir))
    rows: list[tuple[int, float, float]] = []
    bar = tqdm(total=max_frames, desc=name, unit="frame", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    reader.start()
    try:
        while max_frames is None or summary.frames < max_frames:
            item = box.take(timeout=1.0)
            if item is None:
                if box.closed:
                    break
                continue
            index, t, rgb = item
            result = predictor.outputs([rgb], [predictor.preparer.squash(rgb)], save_prob)[0]
            mask = write_outputs(out, frame_name(name, index), rgb, result, overlay)
            rows.append((index, t, float(np.mean(mask))))
            summary.frames += 1
            bar.update(1)
    except KeyboardInterrupt:
        summary.error = "interrupted"
    finally:
        stop.set()
        bar.close()
        reader.join(timeout=10)
        if not reader.is_alive():
            container.close()
        summary.seconds = time.perf_counter() - start
        summary.received, summary.dropped = box.received, box.dropped
        summary.error = summary.error or (failure[0] if failure else None)
        atomic_write_text(out_dir / FRAMES_CSV, frames_csv_text(rows))
    return summary


__all__ = ["LatestFrame", "RateMeter", "StreamSummary", "is_stream", "predict_stream", "stream_name"]
