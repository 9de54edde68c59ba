"""`glassgem predict`: glass masks for image files, folders and globs.

Every photo goes through a glassgem.Predictor (predictor.py: squash, score in batches, resize back, threshold):
decoded and squashed in prefetch threads (Preparer), scored a batch at a time, written by files.py. The inputs
and the output folder are checked before a model is needed (`plan_files`), the photos then run (`run_files`).
An unreadable photo is reported and skipped; the others are still written. Video files among the inputs get a
mask per frame (glassgem.inference.video).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataError, GlassgemError
from ..io import remove_stale_temps
from .files import Photo, assign_names, outputs_done, write_outputs
from .predictor import Predictor, Preparer, as_predictor
from .threads import decode_threads
from .video import check_frame_options, predict_video, require_av

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


def check_video_inputs(photos: Sequence[Photo], every: int = 1, max_frames: int | None = None) -> None:
    """Raise GlassgemError before any work if videos cannot be read (PyAV missing) or the frame options are
    wrong."""
    check_frame_options(every, max_frames)
    if any(p.video for p in photos):
        require_av()


# ------------------------------------------------------------------------------------------ run
@dataclass
class _Loaded:
    photo: Photo
    rgb: np.ndarray | None = None  # uint8 H x W x 3
    squashed: torch.Tensor | None = None  # float32 3 x s x s
    error: str | None = None


def _load(photo: Photo, prepare: Preparer) -> _Loaded:
    try:
        rgb, squashed = prepare(photo.path)
    except DataError as e:
        return _Loaded(photo, error=str(e))
    return _Loaded(photo, rgb, squashed)


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


def _batches(loaded: Iterator[_Loaded], batch_size: int) -> Iterator[list[_Loaded]]:
    batch: list[_Loaded] = []
    for item in loaded:
        batch.append(item)
        if sum(i.error is None for i in batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class FilesRun:
    """What plan_files checked and named: the photos to score, the videos, where to, and how."""

    out: Path
    photos: list[Photo]
    videos: list[Photo]
    notes: list[str]
    kept: int = 0
    save_prob: bool = False
    overlay: bool = False
    every: int = 1
    max_frames: int | None = None
    resume: bool = False


def plan_files(
    photos: Sequence[Photo],
    out: str | Path,
    save_prob: bool = False,
    overlay: bool = False,
    every: int = 1,
    max_frames: int | None = None,
    resume: bool = False,
) -> FilesRun:
    """Everything predict_files checks before a model is needed: videos readable (PyAV) and the frame options,
    output names (renamings noted; never over an input nor out of `out`), and with `resume` the photos an earlier
    run finished. Raises GlassgemError naming the problem."""
    check_video_inputs(photos, every, max_frames)
    out = Path(out)
    named, notes = assign_names(list(photos), out, save_prob, overlay)
    run = FilesRun(out, [p for p in named if not p.video], [p for p in named if p.video], notes)
    run.save_prob, run.overlay, run.every, run.max_frames, run.resume = save_prob, overlay, every, max_frames, resume
    if resume:  # photos whose every output is there and decodes are done
        todo = [p for p in run.photos if not outputs_done(out, p.name, save_prob, overlay)]
        run.kept, run.photos = len(run.photos) - len(todo), todo
    return run


def _open_out(out: Path) -> None:
    """Create `out` and check it takes files, now rather than after scoring every photo."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise GlassgemError(f"--out {out}: cannot create or write to the output folder ({e.strerror or e})") from None
    remove_stale_temps(out, min_age_s=600)  # left by killed runs (not by one writing here right now)


def run_files(
    run: FilesRun, predictor: Predictor, progress: bool = True, report: Callable[[str], None] | None = None
) -> Summary:
    """Score and write what plan_files planned with `predictor` (photos in its batches, then each video)."""
    _open_out(run.out)
    extras = tuple(x for x, on in (("overlays", run.overlay), ("probability maps", run.save_prob)) if on)
    summary = Summary(out=run.out, extras=extras, kept=run.kept)
    bar = tqdm(
        total=len(run.photos), desc="predict", unit="img", disable=not progress or not run.photos, dynamic_ncols=True
    )
    say = report or (lambda line: tqdm.write(line, file=sys.stderr))  # above the bar, not through it
    for note in run.notes:
        say(note)
    start = time.perf_counter()
    size = predictor.batch_size
    loaded = prefetched(run.photos, lambda photo: _load(photo, predictor.preparer), window=2 * size)
    try:
        for batch in _batches(loaded, size):
            good = [(item.rgb, item.squashed) for item in batch if item.rgb is not None and item.squashed is not None]
            results = iter(predictor.outputs([g[0] for g in good], [g[1] for g in good], run.save_prob))
            for item in batch:
                if item.rgb is not None:
                    try:
                        write_outputs(run.out, item.photo.name, item.rgb, next(results), run.overlay)
                        summary.written += 1
                    except (OSError, DataError) as e:  # a full disk; a picture no JPEG can hold
                        item.error = f"{item.photo.path}: cannot write its outputs to {run.out} ({e})"
                if item.error is not None:
                    summary.failed.append((item.photo.path, item.error))
                    say(f"skipped {item.error}")
                bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    for video in run.videos:
        _run_video(run, video, predictor, progress, summary, say)
    return summary


def _run_video(
    run: FilesRun, video: Photo, predictor: Predictor, progress: bool, summary: Summary, say: Callable[[str], None]
) -> None:
    try:
        result = predict_video(
            video.path,
            video.name,
            run.out,
            predictor,
            save_prob=run.save_prob,
            overlay=run.overlay,
            every=run.every,
            max_frames=run.max_frames,
            resume=run.resume,
            progress=progress,
        )
    except DataError as e:
        summary.failed.append((video.path, str(e)))
        say(f"skipped {e}")
        return
    summary.videos.append(result)
    if result.error:
        summary.failed.append((video.path, f"{video.path}: {result.error}"))
        say(f"{video.path}: {result.error}")


def predict_files(
    photos: Sequence[Photo],
    out: str | Path,
    scorer: Any,
    size: int | None = None,
    batch_size: int | None = None,
    save_prob: bool = False,
    overlay: bool = False,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    threshold: float | None = None,
    every: int = 1,
    max_frames: int | None = None,
    resume: bool = False,
) -> Summary:
    """Write masks (and optional probability maps / overlays) for `photos` into `out`.

    `scorer`: a glassgem.Predictor, or what one is made of (a model, weights, a scorer) with `size`,
    `threshold` and `batch_size` (default 4). `report` receives one line per renamed output or skipped photo
    (default: stderr, above the progress bar). Never raises for a bad photo: it is listed in the returned
    Summary.failed with the reason. `resume`: photos whose outputs an earlier run wrote (every one there and
    decoding) are kept, not scored again. Videos among `photos` follow the photos, one by one
    (glassgem.inference.video.predict_video with `every`, `max_frames`, `resume`); a video that cannot be opened,
    or stops decoding part-way, is in Summary.failed too (in the second case with its frames up to there written).
    """
    predictor = as_predictor(scorer, size, threshold, batch_size)
    run = plan_files(photos, out, save_prob, overlay, every, max_frames, resume)
    return run_files(run, predictor, progress, report)


__all__ = ["FilesRun", "Summary", "check_video_inputs", "plan_files", "predict_files", "prefetched", "run_files"]
