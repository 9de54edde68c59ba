"""`glassgem predict`: glass masks for image files, folders and globs.

Each photo follows the test protocol (glassgem.inference.protocol): squash to size x size, 2-class
semantic scores from a *scorer*, bilinear resize back to the photo's size, glass where the glass score
beats the background score. A scorer is any callable float [B,3,s,s] RGB 0..255 -> [B,2,s,s] scores
with an `input_size` attribute (scorers.py): a GEM model or an exported ONNX graph.

What is written, and under which names: files.py. An unreadable photo is reported and skipped; the
others are still written. Video files among the inputs get a mask per frame (glassgem.inference.video).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataError, GlassgemError
from ..io import load_image, remove_stale_temps
from .files import Photo, assign_names, outputs_done, write_prediction
from .protocol import check_size, squash, threshold_option
from .threads import decode_threads
from .video import check_frame_options, predict_video, require_av

if TYPE_CHECKING:  # the model code (timm, torchvision) is imported only when a PyTorch model is loaded
    from .scorers import Scorer

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Summary:
    out: Path
    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    extras: tuple[str, ...] = ()
    videos: list = field(default_factory=list)  # glassgem.inference.video.VideoSummary per video
    kept: int = 0  # photos whose outputs an earlier run wrote (--resume)

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        extras = f" (+ {' and '.join(self.extras)})" if self.extras else ""
        lines = [v.line() for v in self.videos]
        if self.written or self.kept or not self.videos or self.failed:
            kept = f"; kept {self.kept} from an earlier run (--resume)" if self.kept else ""
            lines.append(
                f"wrote {self.written} mask(s){extras} to {self.out} in {self.seconds:.1f} s "
                f"({rate:.2f} images/s){kept}; {len(self.failed)} failed"
            )
        return "\n".join(lines)


def check_video_inputs(photos: Sequence[Photo], every: int = 1, max_frames: Optional[int] = None) -> None:
    """Raise GlassgemError before any work if videos cannot be read (PyAV missing) or the frame options are
    wrong."""
    check_frame_options(every, max_frames)
    if any(p.video for p in photos):
        require_av()


# ------------------------------------------------------------------------------------------ run
@dataclass
class _Loaded:
    photo: Photo
    rgb: Optional[np.ndarray] = None  # uint8 H x W x 3
    squashed: Optional[torch.Tensor] = None  # float32 3 x s x s
    error: Optional[str] = None


def _load(photo: Photo, size: int) -> _Loaded:
    try:
        rgb = load_image(photo.path)
    except DataError as e:
        return _Loaded(photo, error=str(e))
    return _Loaded(photo, rgb, squash(rgb, size))


def prefetched(items: Iterable[T], load: Callable[[T], R], window: int) -> Iterator[R]:
    """load(item) for each item, in threads.decode_threads() threads (1 on 2 cores: more would take the cores
    the network's OpenMP threads run on), at most `window` ahead of the consumer, in order. Photos here, bag
    frames in glassgem.ros2.bag_predict."""
    with ThreadPoolExecutor(max_workers=decode_threads()) as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(load, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _prefetch(photos: Iterable[Photo], size: int, window: int) -> Iterator[_Loaded]:
    """Decoded and squashed photos, prefetched."""
    return prefetched(photos, lambda photo: _load(photo, size), window)


def _batches(loaded: Iterator[_Loaded], batch_size: int) -> Iterator[list[_Loaded]]:
    batch: list[_Loaded] = []
    for item in loaded:
        batch.append(item)
        if sum(i.error is None for i in batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_files(
    photos: Sequence[Photo],
    out: str | Path,
    scorer: Scorer,
    size: Optional[int] = None,
    batch_size: int = 4,
    save_prob: bool = False,
    overlay: bool = False,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    threshold: Optional[float] = None,
    every: int = 1,
    max_frames: Optional[int] = None,
    resume: bool = False,
) -> Summary:
    """Write masks (and optional probability maps / overlays) for `photos` into `out`.

    `size`: the square test size (default: scorer.input_size). `report` receives one line per
    renamed output or skipped photo (default: stderr, above the progress bar). Never raises for a bad
    photo: it is listed in the returned Summary.failed with the reason. `threshold`: see glass_mask.
    `resume`: photos whose outputs an earlier run wrote (every one there and decoding) are kept, not scored again.
    Videos among `photos` follow the photos, one by one (glassgem.inference.video.predict_video with `every`,
    `max_frames`, `resume`); a video that cannot be opened, or stops decoding part-way, is in
    Summary.failed too (in the second case with its frames up to there written).
    """
    size = check_size(size or getattr(scorer, "input_size", 384))
    threshold_option(threshold)
    if batch_size < 1:
        raise GlassgemError(f"--batch-size must be at least 1, got {batch_size}")
    check_video_inputs(photos, every, max_frames)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # writable? asked now, not after scoring every photo
            pass
    except OSError as e:
        raise GlassgemError(f"--out {out}: cannot create or write to the output folder ({e.strerror or e})") from None
    remove_stale_temps(out, min_age_s=600)  # left by killed runs (not by one writing here right now)
    photos, notes = assign_names(list(photos), out, save_prob, overlay)
    videos = [p for p in photos if p.video]
    photos = [p for p in photos if not p.video]
    extras = tuple(x for x, on in (("overlays", overlay), ("probability maps", save_prob)) if on)
    summary = Summary(out=out, extras=extras)
    if resume:  # photos whose every output is there and decodes are done
        todo = [p for p in photos if not outputs_done(out, p.name, save_prob, overlay)]
        summary.kept, photos = len(photos) - len(todo), todo
    bar = tqdm(total=len(photos), desc="predict", unit="img", disable=not progress or not photos, dynamic_ncols=True)
    say = report or (lambda line: tqdm.write(line, file=sys.stderr))  # above the bar, not through it
    for note in notes:
        say(note)
    start = time.perf_counter()
    try:
        for batch in _batches(_prefetch(photos, size, window=2 * batch_size), batch_size):
            good = [item for item in batch if item.error is None]
            with torch.no_grad():
                scores = scorer(torch.stack([item.squashed for item in good])).float().cpu() if good else []
            rows = iter(scores)  # one [2,s,s] row per readable photo, in batch order
            for item in batch:
                if item.error is None:
                    try:
                        write_prediction(out, item.photo.name, item.rgb, next(rows), save_prob, overlay, threshold)
                        summary.written += 1
                    except (OSError, DataError) as e:  # a full disk; a picture no JPEG can hold
                        item.error = f"{item.photo.path}: cannot write its outputs to {out} ({e})"
                if item.error is not None:
                    summary.failed.append((item.photo.path, item.error))
                    say(f"skipped {item.error}")
                bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    for video in videos:
        try:
            result = predict_video(
                video.path,
                video.name,
                out,
                scorer,
                size,
                batch_size=batch_size,
                save_prob=save_prob,
                overlay=overlay,
                threshold=threshold,
                every=every,
                max_frames=max_frames,
                resume=resume,
                progress=progress,
            )
        except DataError as e:
            summary.failed.append((video.path, str(e)))
            say(f"skipped {e}")
            continue
        summary.videos.append(result)
        if result.error:
            summary.failed.append((video.path, f"{video.path}: {result.error}"))
            say(f"{video.path}: {result.error}")
    return summary


__all__ = ["Summary", "check_video_inputs", "predict_files", "prefetched"]
