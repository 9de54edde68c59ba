"""Glass masks for videos: `glassgem predict clip.mp4 --out out/` (PyAV: `pip install -e ".[video]"` in a clone).

Every processed frame goes through the same glassgem.Predictor as photos (squash, score, resize back). For a
video named `clip`, --out receives:

    clip/000000.png ...     0/255 mask of each processed frame at the video's size; the number is the
                            frame's index in the video (with --every 5: 000000, 000005, ...)
    clip/000000_prob.png    with --save-prob: glass probability x 255
    clip/frames.csv         frame, time_s, glass_fraction: one row per processed frame
    clip_overlay.mp4        with --overlay: the processed frames with the glass tinted (H.264)

Masks are written atomically one by one, so an interrupted run loses nothing: with `resume` the frames
whose outputs are already there are not scored again (their masks are read back for frames.csv and the
overlay video). frames.csv and the overlay video are written to temporary files and moved into place at
the end.
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError, GlassgemError
from ..io import atomic_write_text, load_mask
from ..overlay import overlay_mask
from .files import FRAMES_CSV, write_outputs
from .predictor import as_predictor
from .threads import decode_threads

DEFAULT_FPS = Fraction(25)


def frame_name(name: str, index: int) -> str:
    return f"{name}/{index:06d}"


def check_frame_options(every: int, max_frames: int | None) -> None:
    if every < 1:
        raise GlassgemError(f"--every must be at least 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise GlassgemError(f"--max-frames must be at least 1, got {max_frames}")


def require_av():
    try:
        import av
    except ImportError:
        raise GlassgemError(
            'reading videos needs PyAV, which is not installed: pip install -e ".[video]" in your glassgem clone '
            "(or pip install av)"
        ) from None
    return av


@dataclass
class VideoSummary:
    path: Path
    out: Path  # the frame folder
    frames: int = 0  # frames with outputs, scored now or resumed
    resumed: int = 0  # of those, frames whose outputs were already there
    seconds: float = 0.0
    overlay: Path | None = None
    error: str | None = None

    def line(self) -> str:
        scored = self.frames - self.resumed
        rate = scored / self.seconds if self.seconds > 0 else 0.0
        extra = f" (+ {self.overlay})" if self.overlay else ""
        again = f", {self.resumed} already there" if self.resumed else ""
        status = f"; stopped early: {self.error}" if self.error else ""
        return (
            f"{self.path}: {self.frames} frame mask(s) in {self.out}{extra} in {self.seconds:.1f} s "
            f"({rate:.2f} frames/s{again}){status}"
        )


@dataclass
class _Frame:
    index: int
    time: float
    rgb: np.ndarray
    mask: np.ndarray | None = None  # read back from an earlier run (resume)


def _open(path: Path):
    av = require_av()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream in this file")
    return container


def _frames(container, every: int, max_frames: int | None) -> Iterator[tuple[int, float, np.ndarray]]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:  # FFmpeg's default is a thread per core, which fights the network's OpenMP threads (threads.py)
        stream.thread_count = decode_threads()
    except (AttributeError, ValueError):
        pass
    rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
    taken = 0
    for index, frame in enumerate(container.decode(stream)):
        if index % every:
            continue
        t = float(frame.time) if frame.time is not None else index / float(rate)
        yield index, t, frame.to_ndarray(format="rgb24")
        taken += 1
        if max_frames is not None and taken >= max_frames:
            return


def _declared_frames(container) -> int | None:
    """The frames the file says it holds: the stream's count, else its duration (or the container's) x its
    frame rate; None when it says neither."""
    stream = container.streams.video[0]
    n = stream.frames
    if not n and stream.duration is not None and stream.time_base and stream.average_rate:
        n = int(stream.duration * stream.time_base * stream.average_rate)
    if not n and container.duration and stream.average_rate:
        n = int(container.duration / 1_000_000 * stream.average_rate)  # av.time_base: microseconds
    return n or None


def _short_by(declared: int | None, decoded: int, every: int) -> str | None:
    """Why a video that decoded without an error still ended early (a file cut short), or None. Declared counts
    may be off by a frame or two: more than max(2, 2%) missing (beyond the `every` step) counts."""
    if not declared or declared - decoded <= every + max(2, 0.02 * declared):
        return None
    return (
        f"the file declares {declared} frames but decoding ended after {decoded} (cut short or damaged); "
        "the frames up to there are written, and --resume continues once the file is complete"
    )


def _expected_frames(container, every: int, max_frames: int | None) -> int | None:
    n = _declared_frames(container)
    if not n:
        return max_frames
    n = math.ceil(n / every)
    return min(n, max_frames) if max_frames is not None else n


class _OverlayVideo:
    """H.264 (yuv420p) writer into a temporary file, moved into place by close(); odd sizes lose the last
    row/column (4:2:0 needs even sizes)."""

    def __init__(self, path: Path, fps: Fraction) -> None:
        av = require_av()
        self.path, self.tmp = path, path.with_name(f".{path.name}.part")
        self.container = av.open(str(self.tmp), "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "20", "preset": "veryfast"}  # medium: ~3x slower per frame
        self.size: tuple[int, int] | None = None

    def add(self, rgb: np.ndarray) -> None:
        av = require_av()
        if self.size is None:
            self.size = (rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2)
            self.stream.height, self.stream.width = self.size
        h, w = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self, keep: bool) -> None:
        try:
            if self.size is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
            self.container.close()
            if keep and self.size is not None:
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


def _done_mask(out: Path, name: str, index: int, save_prob: bool) -> np.ndarray | None:
    """The mask an earlier run wrote for this frame, if all its outputs are there and readable."""
    base = out / frame_name(name, index)
    if save_prob and not Path(f"{base}_prob.png").is_file():
        return None
    try:
        return load_mask(Path(f"{base}.png"))
    except DataError:
        return None


def frames_csv_text(rows: list[tuple[int, float, float]]) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "time_s", "glass_fraction"])
    w.writerows((i, f"{t:.4f}", f"{g:.6f}") for i, t, g in rows)
    return buf.getvalue()


def predict_video(
    path: str | os.PathLike,
    name: str,
    out: str | os.PathLike,
    scorer: Any,
    size: int | None = None,
    batch_size: int | None = None,
    save_prob: bool = False,
    overlay: bool = False,
    threshold: float | None = None,
    every: int = 1,
    max_frames: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> VideoSummary:
    """Masks (and probability maps, frames.csv, an overlay video) for the frames of one video.

    `scorer`/`size`/`threshold`/`batch_size` as in glassgem.inference.predict.predict_files (a Predictor, or
    what one is made of). `every`: score every n-th frame;
    `max_frames`: stop after this many processed frames. Raises DataError for a file that cannot be
    opened as a video; a decoding error part-way, or a file whose frames end well before the count (or
    duration) it declares, is returned in VideoSummary.error with the frames before it written (frames.csv
    and the overlay then cover those frames).
    """
    check_frame_options(every, max_frames)
    predictor = as_predictor(scorer, size, threshold, batch_size)
    path, out = Path(path), Path(out)
    av = require_av()
    container = _open(path)
    summary = VideoSummary(path=path, out=out / name)
    rows: list[tuple[int, float, float]] = []
    stream = container.streams.video[0]
    fps = (stream.average_rate or stream.guessed_rate or DEFAULT_FPS) / every
    writer = _OverlayVideo(out / f"{name}_overlay.mp4", fps) if overlay else None
    bar = tqdm(
        total=_expected_frames(container, every, max_frames),
        desc=path.name,
        unit="frame",
        disable=not progress,
        dynamic_ncols=True,
    )
    start = time.perf_counter()

    def flush(batch: list[_Frame]) -> None:
        todo = [f for f in batch if f.mask is None]
        squashed = [predictor.preparer.squash(f.rgb) for f in todo]
        for f, result in zip(todo, predictor.outputs([f.rgb for f in todo], squashed, save_prob)):
            f.mask = write_outputs(out, frame_name(name, f.index), f.rgb, result, False)
        for f in batch:
            mask = f.mask
            assert mask is not None  # read from an earlier run, or predicted just above
            if mask.shape != f.rgb.shape[:2]:
                raise DataError(
                    f"{out / frame_name(name, f.index)}.png: the mask from an earlier run is "
                    f"{mask.shape[1]}x{mask.shape[0]}, the frame {f.rgb.shape[1]}x"
                    f"{f.rgb.shape[0]}; delete {out / name} or leave out --resume"
                )
            rows.append((f.index, f.time, float(mask.mean())))
            if writer is not None:
                writer.add(overlay_mask(f.rgb, mask))
            summary.frames += 1
        bar.update(len(batch))

    ok = False
    try:
        (out / name).mkdir(parents=True, exist_ok=True)
        batch: list[_Frame] = []
        decoded = 0  # frames the decoder gave, counting those --every skips
        try:
            for index, t, rgb in _frames(container, every, max_frames):
                decoded = index + 1
                mask = _done_mask(out, name, index, save_prob) if resume else None
                summary.resumed += mask is not None
                batch.append(_Frame(index, t, rgb, mask))
                if sum(f.mask is None for f in batch) >= predictor.batch_size:
                    flush(batch)
                    batch = []
        except av.FFmpegError as e:
            summary.error = f"cannot decode the video after {summary.frames + len(batch)} frame(s) ({e})"
        if summary.error is None and (max_frames is None or summary.frames + len(batch) < max_frames):
            summary.error = _short_by(_declared_frames(container), decoded, every)
        flush(batch)
        ok = True
    except OSError as e:
        raise GlassgemError(f"{out / name}: cannot write the outputs ({e})") from None
    finally:
        bar.close()
        container.close()
        if writer is not None:
            writer.close(keep=ok)
    if not rows:
        summary.error = summary.error or "no frames could be decoded"
    atomic_write_text(out / name / FRAMES_CSV, frames_csv_text(rows))
    if writer is not None and writer.size is not None:
        summary.overlay = writer.path
    summary.seconds = time.perf_counter() - start
    return summary
