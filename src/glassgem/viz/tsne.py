"""t-SNE of image features from several image sets in one scatter plot (the paper's supplementary
Figure 1: how close synthetic glass scenes sit to real ones).

Features are either the global average of the GEM encoder's stride-16 map (photos squashed to the
model's test size, as the test protocol does) or CLIP image embeddings (L2-normalised, CLIP's own
geometry). Each set is sampled deterministically, the 2-D coordinates are written as CSV beside the plot.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.layouts import available_splits, resolve_split
from ..errors import ConfigError, DataError
from ..hub.refs import check_ref, load_or_raise
from ..inference.protocol import check_size, squash
from ..io import IMAGE_EXTENSIONS, atomic_write_bytes, atomic_write_text, load_image
from ..model.gem import GEM

FEATURES = ("encoder", "clip")
PLOT_FORMATS = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


@dataclass(frozen=True)
class ImageSet:
    name: str
    root: Path
    paths: list[Path]  # after sampling, sorted


# ------------------------------------------------------------------------------ image sets
def parse_set(spec: str) -> tuple[str, Path]:
    """ "NAME=DIR" -> (NAME, DIR)."""
    name, sep, folder = spec.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise ConfigError(f"--data {spec!r}: expected NAME=DIR, e.g. real=data/gdd synthetic=data/sgsd")
    return name.strip(), Path(folder.strip())


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def list_images(root: str | os.PathLike) -> list[Path]:
    """The photos of a dataset root (any layout glassgem.data knows; every split if it has several) or
    of a plain folder of images. DataError naming the folder if there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    folders: list[Path] = []
    try:
        folders = [resolve_split(root).images_dir]
    except DataError:
        for split in available_splits(root):
            folder = resolve_split(root, split=split).images_dir
            if folder not in folders:
                folders.append(folder)
    if not folders:  # a plain folder, or photos without masks in images/
        folders = [root / "images"] if (root / "images").is_dir() and not _image_files(root) else [root]
    paths = [p for folder in folders for p in _image_files(folder)]
    if not paths:
        where = ", ".join(str(f) for f in folders)
        raise DataError(
            f"{where}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files in a plain "
            "folder or in a dataset layout's images folder)"
        )
    return paths


def sample(paths: Sequence[Path], max_n: int | None, seed: int) -> list[Path]:
    """At most `max_n` of `paths`, chosen by `seed` alone (same files on every run), in sorted order."""
    paths = sorted(paths)
    if max_n is None or len(paths) <= max_n:
        return paths
    keep = np.random.default_rng(seed).choice(len(paths), size=max_n, replace=False)
    return [paths[i] for i in sorted(keep)]


def load_sets(specs: Sequence[str], max_per_set: int | None = None, seed: int = 0) -> list[ImageSet]:
    if not specs:
        raise ConfigError("give at least one image set as NAME=DIR")
    if max_per_set is not None and max_per_set < 1:
        raise ConfigError(f"--max-per-set {max_per_set}: must be at least 1")
    sets: list[ImageSet] = []
    for spec in specs:
        name, root = parse_set(spec)
        if any(s.name == name for s in sets):
            raise ConfigError(f"--data: the set name {name!r} is given twice")
        sets.append(ImageSet(name, root, sample(list_images(root), max_per_set, seed)))
    return sets


# ------------------------------------------------------------------------------ features
Extractor = Callable[[list[np.ndarray]], torch.Tensor]  # uint8 RGB photos -> [B, D]


def encoder_extractor(model: GEM, size: int | None = None) -> Extractor:
    """Global average pool of GEM's stride-16 encoder map ("res4" of a multi-scale encoder)."""
    size = check_size(size or model.cfg.image_size)
    device = next(model.parameters()).device

    @torch.no_grad()
    def extract(images: list[np.ndarray]) -> torch.Tensor:
        x = torch.stack([squash(im, size) for im in images]).to(device)
        fmap = model.encoder(model.normalize(x))
        if isinstance(fmap, dict):
            fmap = fmap["res4"]
        return fmap.float().mean(dim=(2, 3))  # B x C

    return extract


def clip_extractor(model_ref: str | os.PathLike, device: torch.device | str = "cpu") -> Extractor:
    """CLIP image embeddings (projected, L2-normalised) from a local folder or a hub id (cache/network)."""
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    check_ref(model_ref, "CLIP model")
    # transformers wraps PreTrainedModel.to in a decorator whose typing takes the model as the first argument
    clip = load_or_raise("CLIP model", model_ref, CLIPModel.from_pretrained).to(device).eval()  # type: ignore[arg-type]
    processor = load_or_raise("CLIP image processor", model_ref, CLIPImageProcessor.from_pretrained)

    @torch.no_grad()
    def extract(images: list[np.ndarray]) -> torch.Tensor:
        pixels = processor(images=[Image.fromarray(im) for im in images], return_tensors="pt").pixel_values
        pooled = clip.vision_model(pixel_values=pixels.to(device)).pooler_output
        emb = clip.visual_projection(pooled).float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    return extract


def extract_features(
    sets: Sequence[ImageSet], extract: Extractor, batch_size: int = 8, progress: bool = True, desc: str = "features"
) -> np.ndarray:
    """[N, D] features of every image of every set, in set order."""
    from tqdm.auto import tqdm

    paths = [p for s in sets for p in s.paths]
    feats = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            feats.append(extract([load_image(p) for p in chunk]).cpu().numpy())
            bar.update(len(chunk))
    return np.concatenate(feats).astype(np.float64)


# ------------------------------------------------------------------------------ t-SNE + outputs
def valid_perplexity(perplexity: float, n: int) -> float:
    """t-SNE needs perplexity < n; (n - 1) / 3 keeps ~3 neighbourhoods' worth of points per point."""
    return float(max(1.0, min(perplexity, (n - 1) / 3.0)))


def tsne_2d(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """[N, D] -> [N, 2], Barnes-Hut t-SNE with PCA init, single-threaded: the same coordinates on every
    machine, and on a busy machine OpenMP threads made a few hundred points ~10x slower, not faster."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    with threadpool_limits(limits=1):
        return tsne.fit_transform(features)


def plot(coords: np.ndarray, labels: Sequence[str], names: Sequence[str], title: str, path: Path) -> Path:
    """Scatter, one colour per set, legend with counts; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TABLEAU_COLORS
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = list(TABLEAU_COLORS.values())  # the tab10 colours, in order
    label_array = np.asarray(labels)
    for i, name in enumerate(names):
        pts = coords[label_array == name]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=18,
            alpha=0.8,
            color=colors[i % len(colors)],
            edgecolors="none",
            label=f"{name} ({len(pts)})",
        )
    ax.legend(loc="best", fontsize=9, frameon=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    return atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, sets: Sequence[ImageSet], coords: np.ndarray) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["set", "image", "x", "y"])
    rows = [(s.name, p) for s in sets for p in s.paths]
    for (name, p), (x, y) in zip(rows, coords):
        writer.writerow([name, str(p), f"{x:.6g}", f"{y:.6g}"])
    return atomic_write_text(path, buf.getvalue())


def tsne_figure(
    specs: Sequence[str],
    out: str | os.PathLike,
    features: str = "encoder",
    model: GEM | None = None,
    clip_model: str | os.PathLike | None = None,
    max_per_set: int | None = 200,
    perplexity: float = 30.0,
    seed: int = 0,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """The whole job: sets -> features -> t-SNE -> OUT (plot) + OUT with .csv (set, image, x, y).

    `model` (a GEM, on its device) is needed for encoder features, `clip_model` (run on `device`) for CLIP
    ones. Returns a summary.
    """
    out = Path(out)
    if out.suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(f"--out {out}: the plot must be one of {', '.join(PLOT_FORMATS)}")
    if features not in FEATURES:
        raise ConfigError(f"unknown features {features!r}; choose one of {', '.join(FEATURES)}")
    sets = load_sets(specs, max_per_set, seed)
    n = sum(len(s.paths) for s in sets)
    if n < 3:
        raise DataError(f"t-SNE needs at least 3 images in all, got {n} ({', '.join(str(s.root) for s in sets)})")
    if features == "clip":
        if clip_model is None:
            raise ConfigError("--features clip needs --clip-model (a local CLIP folder or a hub id)")
        extract = clip_extractor(clip_model, device)
    else:
        if model is None:
            raise ConfigError("encoder features need a GEM model")
        extract = encoder_extractor(model)
    feats = extract_features(sets, extract, batch_size, progress, desc=f"{features} features")
    used = valid_perplexity(perplexity, n)
    coords = tsne_2d(feats, used, seed)
    labels = [s.name for s in sets for _ in s.paths]
    title = f"t-SNE of {features} features ({n} images, perplexity {used:.3g})"
    plot(coords, labels, [s.name for s in sets], title, out)
    csv_path = write_csv(out.with_suffix(".csv"), sets, coords)
    return {
        "plot": out,
        "csv": csv_path,
        "counts": {s.name: len(s.paths) for s in sets},
        "perplexity": used,
        "feature_dim": int(feats.shape[1]),
    }


__all__ = [
    "FEATURES",
    "ImageSet",
    "clip_extractor",
    "encoder_extractor",
    "extract_features",
    "list_images",
    "load_sets",
    "parse_set",
    "plot",
    "sample",
    "tsne_2d",
    "tsne_figure",
    "valid_perplexity",
    "write_csv",
]
