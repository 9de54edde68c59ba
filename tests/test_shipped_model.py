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
