"""The user-facing model class, `glassgem.GEM`: the network (glassgem.model.GEM) with its weight files as
methods (each a call of the function of the same name in glassgem.hub.pretrained: from_pretrained, load_checked,
save_pretrained, push_to_hub) and `predict`, a thin call of glassgem.Predictor. It sits above hub/ and
inference/ and overrides no computation of the network.

    from glassgem import GEM
    model = GEM.from_pretrained()          # the shipped GEM-S
    mask = model.predict("photo.jpg")      # uint8 {0, 1} at the photo's size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
from torch import Tensor

from .config import ModelConfig
from .hub import pretrained
from .inference.predictor import Predictor
from .inference.protocol import ImageLike
from .inference.runtime import fuse_for_inference
from .model.gem import GEM as Network


class GEM(Network):
    """glassgem.model.GEM with weight files (glassgem.hub.pretrained) and prediction (glassgem.Predictor)."""

    _fused = False  # True once glassgem.inference.runtime.fuse_for_inference folded weights away: not saved

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        config: ModelConfig | None = None,
        *,
        filename: str | None = None,
        revision: str | None = None,
        strict: bool = True,
    ) -> Self:
        """A shipped model's name, a folder, an original checkpoint or a Hugging Face Hub id (None: the shipped
        default) loaded into this class, in eval mode: glassgem.hub.pretrained.from_pretrained."""
        model = pretrained.from_pretrained(
            name_or_path, config, filename=filename, revision=revision, strict=strict, model_class=cls
        )
        assert isinstance(model, cls)  # from_pretrained builds model_class
        return model

    def load_checked(self, sd: dict[str, Tensor], source: str | Path, strict: bool = True) -> None:
        """load_state_dict with errors naming `source`: glassgem.hub.pretrained.load_checked."""
        pretrained.load_checked(self, sd, source, strict)

    def save_pretrained(self, path: str | Path, packaged_vit: bool = False) -> Path:
        """config.json + model.safetensors in `path`: glassgem.hub.pretrained.save_pretrained."""
        return pretrained.save_pretrained(self, path, packaged_vit)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload GEM model",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """What save_pretrained writes, uploaded to the Hub repo `repo_id`: glassgem.hub.pretrained.push_to_hub."""
        return pretrained.push_to_hub(self, repo_id, commit_message, private, token, revision, create_pr)

    def predict(
        self,
        image: ImageLike,
        size: int | None = None,
        return_prob: bool = False,
        tta: bool = False,
        threshold: float | None = None,
    ) -> np.ndarray:
        """Glass mask of one photo (PIL image, uint8 H x W x 3 RGB array or file path) at its own size:
        uint8 {0, 1} [H, W], or with `return_prob` the glass probability, float32 [H, W] in [0, 1].
        `Predictor(self, size=size, tta=tta, threshold=threshold).predict(image)`: see glassgem.Predictor; make
        one Predictor for many photos (it takes lists and batches)."""
        result = Predictor(self, size=size, tta=tta, threshold=threshold).predict(image, return_probs=return_prob)
        return result if return_prob else result.astype(np.uint8)

    def fuse_for_inference(self) -> GEM:
        """Eval mode with the encoder's BatchNorms folded into its convs (inference/runtime.py), in place and
        one-way: a model that lost weights to the folding can no longer be trained or saved, and a Predictor
        runs it through TorchScript graphs where those are faster. What `glassgem predict` does to the weights
        it loads; `Predictor("gem-lite")` does it too."""
        fuse_for_inference(self)
        return self

    def train(self, mode: bool = True) -> GEM:
        """nn.Module.train, refused for a model fused for inference (its BatchNorm weights are gone)."""
        if mode and self._fused:
            raise RuntimeError(
                "this GEM was fused for inference (fuse_for_inference) and cannot be trained; "
                "load the weights again to train"
            )
        return super().train(mode)


__all__ = ["GEM"]
