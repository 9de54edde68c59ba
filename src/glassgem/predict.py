"""`glassgem predict`: glass masks for image files, folders and globs.

Each photo follows the test protocol (glassgem.model.inference): squash to size x size, 2-class
semantic scores from a *scorer*, bilinear resize back to the photo's size, glass where the glass score
beats the background score. A scorer is any callable float [B,3,s,s] RGB 0..255 -> [B,2,s,s] scores
with an `input_size` attribute: a GEM model (ModelScorer) or an exported ONNX graph.

Outputs per photo in --out: `<name>.png` (mask 0/255 at the photo's size), optionally `<name>_prob.png`
(glass probability x 255) and `<name>_overlay.jpg` (photo with the glass tinted). `<name>` is the file
stem (the path below the folder, for folders read with --recursive); photos that would share a name get
`_2`, `_3`, ... in input order, and each renaming is reported. An unreadable photo is reported and
skipped; the others are still written. Video files among the inputs get a mask per frame
(glassgem.video: `<name>/000000.png` ..., `<name>/frames.csv`, `<name>_overlay.mp4`).
"""
from __future__ import annotations

import glob
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from .errors import DataError, GlassgemError
from .io import IMAGE_EXTENSIONS, load_image, save_image, save_mask
from .model.inference import check_size, glass_mask, glass_probability, squash, threshold_option, unsquash
from .video import VIDEO_EXTENSIONS, is_video, video_outputs

Scorer = Callable[[torch.Tensor], torch.Tensor]  # float [B,3,s,s] 0..255 -> [B,2,s,s]
GLOB_CHARS = set("*?[")


@dataclass
class Photo:
    path: Path
    name: str  # output name below --out, no extension ("x" or "sub/x")

    @property
    def video(self) -> bool:  # a video file (glassgem.video), not a photo
        return is_video(self.path)


@dataclass
class Summary:
    out: Path
    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    extras: tuple[str, ...] = ()
    videos: list = field(default_factory=list)  # glassgem.video.VideoSummary per video

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        extras = f" (+ {' and '.join(self.extras)})" if self.extras else ""
        lines = [v.line() for v in self.videos]
        if self.written or not self.videos or self.failed:
            lines.append(f"wrote {self.written} mask(s){extras} to {self.out} in {self.seconds:.1f} s "
                         f"({rate:.2f} images/s); {len(self.failed)} failed")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ inputs
def _is_input(path: Path) -> bool:  # a photo or a video
    return path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS and not path.name.startswith(".")


def _folder_inputs(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_input(p))
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if _is_input(Path(f))]
    return found


def _within(path: Path, folder: Optional[Path]) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def collect_inputs(inputs: Sequence[str], recursive: bool = False, out: Optional[str | Path] = None) -> list[Photo]:
    """Files, folders and glob patterns -> photos with their base output names, in order, each file once.

    Folders give their image files (sorted; subfolders too with `recursive`); globs are expanded here,
    so quoted patterns work, `**` included. Files under `out` are left out (earlier results). Raises
    GlassgemError naming the input for a path that does not exist or a folder/pattern without images.
    """
    out_dir = _resolve(Path(out), f"--out {out}") if out is not None else None
    photos: list[Photo] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = _resolve(path, str(path))
        if key not in seen and not _within(key, out_dir):
            seen.add(key)
            photos.append(Photo(path, name))

    def add_folder(folder: Path, label: str) -> None:
        if _within(_resolve(folder, label), out_dir):
            raise DataError(f"--out {out}: the input folder {label} is inside it (or is it), so its photos would be "
                            "taken for earlier results and the masks mixed with them; choose another --out")
        images = _folder_inputs(folder, recursive)
        if not images:
            deep = "" if recursive else " (use --recursive for subfolders)"
            raise DataError(f"{label}: no image or video files ({', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}) "
                            f"in this folder{deep}")
        for p in images:
            add(p, p.relative_to(folder).with_suffix("").as_posix())

    if not inputs:
        raise GlassgemError("predict: no inputs given")
    for text in inputs:
        path = Path(text)
        if path.is_file():
            if _within(_resolve(path, text), out_dir):
                raise DataError(f"{text}: this input is inside --out {out}, where its mask would be written over or "
                                "beside it; choose another --out")
            add(path, path.stem)  # named explicitly: taken whatever its extension
        elif path.is_dir():
            add_folder(path, text)
        elif GLOB_CHARS & set(text):
            found = 0
            for m in (Path(m) for m in sorted(glob.glob(text, recursive=True))):
                images = [(p, p.relative_to(m).with_suffix("").as_posix()) for p in _folder_inputs(m, recursive)] \
                    if m.is_dir() else [(m, m.stem)] if _is_input(m) else []
                found += len(images)
                for p, name in images:
                    add(p, name)
            if not found:
                raise DataError(f"{text}: the pattern matches no image or video files")
        elif path.is_symlink():
            raise DataError(f"{text}: a broken symbolic link or a symlink loop")
        else:
            raise DataError(f"{text}: no such file or folder")
    if not photos:
        raise DataError(f"{', '.join(inputs)}: every input file is inside --out {out} (earlier results); nothing "
                        "to predict")
    return photos


def _resolve(path: Path, label: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(f"{label}: cannot follow this path ({e})") from None


def check_video_inputs(photos: Sequence[Photo], every: int = 1, max_frames: Optional[int] = None) -> None:
    """Raise GlassgemError before any work if videos cannot be read (PyAV missing) or the frame options are
    wrong."""
    from .video import check_frame_options, require_av

    check_frame_options(every, max_frames)
    if any(p.video for p in photos):
        require_av()


def _outputs(name: str, save_prob: bool, overlay: bool, video: bool = False) -> list[str]:
    if video:
        return video_outputs(name, overlay)
    return [f"{name}.png"] + ([f"{name}_prob.png"] if save_prob else []) + (
        [f"{name}_overlay.jpg"] if overlay else [])


def assign_names(photos: list[Photo], out: str | Path, save_prob: bool = False, overlay: bool = False
                 ) -> tuple[list[Photo], list[str]]:
    """Give every photo output names no other photo uses (`_2`, `_3`, ... in input order; compared
    case-insensitively, as on macOS and Windows disks). -> (photos, notes about renamings).

    Raises GlassgemError when an output would overwrite one of the input photos."""
    taken: set[str] = set()
    renamed: list[str] = []
    result = []
    for photo in photos:
        name, k = photo.name, 1
        while any(f.casefold() in taken for f in _outputs(name, save_prob, overlay, photo.video)):
            k += 1
            name = f"{photo.name}_{k}"
        taken.update(f.casefold() for f in _outputs(name, save_prob, overlay, photo.video))
        if name != photo.name:
            renamed.append(f"{photo.path} -> {name}{'/' if photo.video else '.png'}")
        result.append(Photo(photo.path, name))
    inputs = {p.path.resolve() for p in photos}
    out = Path(out)
    for photo in result:
        for f in _outputs(photo.name, save_prob, overlay, photo.video):
            if (out / f).resolve() in inputs:
                raise GlassgemError(f"--out {out}: writing {f} would overwrite the input {out / f}; "
                                    "choose another output folder")
    notes = []
    if renamed:
        shown = "; ".join(renamed[:5]) + ("; ..." if len(renamed) > 5 else "")
        notes.append(f"note: {len(renamed)} photo(s) share a name with an earlier one and were renamed: {shown}")
    return result, notes


# ------------------------------------------------------------------------------------------ scorer
class ModelScorer:
    """A GEM model as a scorer: no grad, eval mode, on its device, under the requested autocast."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: Optional[torch.dtype] = None):
        self.model, self.device, self.dtype = model.eval(), device, dtype
        self.input_size = int(model.cfg.image_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from .evaluate import autocast_context

        with autocast_context(self.device, self.dtype):
            return self.model.semantic_scores(images.to(self.device))


class FlipAveraged:
    """Any scorer (GEM or ONNX) with flip test-time augmentation: 2 forward passes per batch."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from .model.inference import flip_averaged

        return flip_averaged(self.scorer, torch.as_tensor(images))

    def __getattr__(self, name: str):  # input_size, square_size, config, ... of the wrapped scorer
        return getattr(self.scorer, name)


def build_scorer(weights: Optional[str], device: Optional[str] = None, dtype: str = "fp32",
                 smoothing: Optional[float] = None) -> ModelScorer:
    """The shipped model (weights=None), a glassgem directory or an original GEM checkpoint; `smoothing`
    replaces the model's score smoothing (see evaluate.load_model_for_inference)."""
    from .evaluate import load_model_for_inference

    model, dev, autocast_dtype = load_model_for_inference(weights, device, dtype, smoothing)
    return ModelScorer(model, dev, autocast_dtype)


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


def _prefetch(photos: Iterable[Photo], size: int, window: int) -> Iterator[_Loaded]:
    """Decode and squash photos in runtime.decode_threads() threads (1 on 2 cores: more would take the cores
    the network's OpenMP threads run on), at most `window` ahead of the consumer, in order."""
    from .runtime import decode_threads

    with ThreadPoolExecutor(max_workers=decode_threads()) as pool:
        pending: deque[Future] = deque()
        for photo in photos:
            pending.append(pool.submit(_load, photo, size))
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


def write_prediction(out: Path, name: str, rgb: np.ndarray, scores: torch.Tensor, save_prob: bool, overlay: bool,
                     threshold: Optional[float] = None) -> np.ndarray:
    """scores [2,s,s] -> the photo's mask (and probability map, overlay) in `out` as `name`...; -> the mask."""
    full = unsquash(scores[None].float(), rgb.shape[:2])[0]  # 2 x H x W
    mask = glass_mask(full, threshold).numpy()
    save_mask(out / f"{name}.png", mask)
    if save_prob:
        prob = (glass_probability(full).numpy() * 255.0 + 0.5).astype(np.uint8)
        save_image(out / f"{name}_prob.png", prob)
    if overlay:
        from .viz.overlay import overlay_mask

        save_image(out / f"{name}_overlay.jpg", overlay_mask(rgb, mask), quality=90)
    return mask


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
    Videos among `photos` follow the photos, one by one (glassgem.video.predict_video with `every`,
    `max_frames`, `resume`); a video that cannot be opened, or stops decoding part-way, is in
    Summary.failed too (in the second case with its frames up to there written).
    """
    from tqdm.auto import tqdm

    size = check_size(size or getattr(scorer, "input_size", 384))
    threshold_option(threshold)
    if batch_size < 1:
        raise GlassgemError(f"--batch-size must be at least 1, got {batch_size}")
    check_video_inputs(photos, every, max_frames)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GlassgemError(f"--out {out}: cannot create the output folder ({e.strerror or e})") from None
    from .io import remove_stale_temps

    remove_stale_temps(out, min_age_s=600)  # left by killed runs (not by one writing here right now)
    photos, notes = assign_names(list(photos), out, save_prob, overlay)
    videos = [p for p in photos if p.video]
    photos = [p for p in photos if not p.video]
    extras = tuple(x for x, on in (("overlays", overlay), ("probability maps", save_prob)) if on)
    summary = Summary(out=out, extras=extras)
    bar = tqdm(total=len(photos), desc="predict", unit="img", disable=not progress or not photos,
               dynamic_ncols=True)
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
                    except OSError as e:
                        item.error = f"{item.photo.path}: cannot write its outputs to {out} ({e})"
                if item.error is not None:
                    summary.failed.append((item.photo.path, item.error))
                    say(f"skipped {item.error}")
                bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    from .video import predict_video

    for video in videos:
        try:
            result = predict_video(video.path, video.name, out, scorer, size, batch_size=batch_size,
                                   save_prob=save_prob, overlay=overlay, threshold=threshold, every=every,
                                   max_frames=max_frames, resume=resume, progress=progress)
        except DataError as e:
            summary.failed.append((video.path, str(e)))
            say(f"skipped {e}")
            continue
        summary.videos.append(result)
        if result.error:
            summary.failed.append((video.path, f"{video.path}: {result.error}"))
            say(f"{video.path}: {result.error}")
    return summary
