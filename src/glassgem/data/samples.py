"""Glass-free sample photos that ship inside glassgem's installed dependencies (nothing is downloaded).

GDD and GSD-S photos all contain glass; these are what a model is asked about photos without any:
scikit-image's sample photos and textures, scikit-learn's two sample photos and matplotlib's portrait of
Grace Hopper. Some scikit-image photos are also backgrounds of glassgem's procedural scenes
(synth/backgrounds.py), so a model trained on procedural scenes has seen them; `HELD_OUT` names the ones
no glassgem training data uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import load_image

SKIMAGE = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "moon",
    "hubble_deep_field",
)
HELD_OUT = ("sklearn:china.jpg", "sklearn:flower.jpg", "matplotlib:grace_hopper.jpg")


def glass_free_photos() -> dict[str, np.ndarray]:
    """name ("package:photo") -> uint8 RGB [H, W, 3], in a fixed order."""
    import matplotlib
    import sklearn.datasets
    from skimage import data

    photos = {}
    for name in SKIMAGE:
        img = getattr(data, name)()
        photos[f"skimage:{name}"] = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    for name in ("china.jpg", "flower.jpg"):
        photos[f"sklearn:{name}"] = load_image(Path(sklearn.datasets.__file__).parent / "images" / name)
    photos["matplotlib:grace_hopper.jpg"] = load_image(
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    )
    return photos
