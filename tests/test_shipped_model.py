"""The default model that ships inside the package: loads offline, fits the size budget, documented."""
from __future__ import annotations

import numpy as np
import pytest

from glassgem import GEM
from glassgem.model.gem import DEFAULT_WEIGHTS


def test_shipped_weights_are_gem_lite_within_budget_and_documented():
    weights = DEFAULT_WEIGHTS / "model.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 40 * 2**20
    card = (DEFAULT_WEIGHTS / "MODEL_CARD.md").read_text()
    assert "non-commercial" in card and "glassgem train --preset gem-lite" in card
    model = GEM.from_pretrained()
    assert model.cfg.name == "gem-lite" and not model.training


def test_shipped_model_predicts_a_mask_at_the_photo_size():
    from skimage import data

    photo = data.coffee()  # ships inside scikit-image's wheel
    mask = GEM.from_pretrained().predict(photo)
    assert mask.shape == photo.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}


def _gdd_dev():
    import os
    from pathlib import Path

    shared = os.environ.get("GLASSGEM_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return root / "data" / "gdd-dev"


@pytest.mark.skipif(not (_gdd_dev() / "val" / "images").is_dir(),
                    reason="real GDD dev data not found (set GLASSGEM_SHARED to the shared folder)")
def test_model_card_metrics_are_what_the_shipped_weights_score_on_gdd_dev_val():
    """The four numbers in MODEL_CARD.md (and the README) are re-measured, not copied."""
    import re

    import torch

    from glassgem.data.layouts import find_pairs
    from glassgem.evaluate import evaluate_model

    card = (DEFAULT_WEIGHTS / "MODEL_CARD.md").read_text()
    m = re.search(r"gdd-dev/val: \*\*IoU ([0-9.]+), F-beta ([0-9.]+), MAE ([0-9.]+), BER ([0-9.]+)\*\*", card)
    assert m, "the model card states the gdd-dev/val metrics in its summary line"
    iou, fbeta, mae, ber = map(float, m.groups())
    torch.set_num_threads(2)
    model = GEM.from_pretrained().eval().fuse_for_inference()
    got = evaluate_model(model, find_pairs(_gdd_dev(), split="val"), num_workers=0, progress=False)
    assert got["n_images"] == 99
    assert abs(got["iou"] - iou) < 0.001 and abs(got["fbeta"] - fbeta) < 0.001
    assert abs(got["mae"] - mae) < 0.001 and abs(got["ber"] - ber) < 0.01
