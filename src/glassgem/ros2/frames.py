"""The per-frame logic shared by bags (bag_predict.py) and the live node (node.py), with no ROS import.

FrameProcessor turns decoded frames into masks with the same glassgem.Predictor as photos (squash, one
scorer call per batch, scores resized back, glass where the glass score wins or above --threshold) and into
the fields of the output messages. The live node also uses LatestFrame, the one-slot mailbox of
glassgem.inference.stream (a camera faster than the network overwrites the waiting frame instead of
queueing it), and RateMeter (frames/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..inference.predictor import as_predictor
from ..inference.stream import LatestFrame, RateMeter  # the node's mailbox and rate log, shared with live streams
from ..overlay import overlay_mask
from .messages import message_to_rgb, mono8_fields, rgb8_fields


@dataclass
class FrameOutput:
    """One frame's result: the {0,1} mask at the frame's size, and the fields of the messages to publish."""

    mask: np.ndarray
    mask_fields: dict[str, Any]
    overlay_fields: dict[str, Any] | None = None


class FrameProcessor:
    """Frames -> masks and output message fields, with a glassgem.Predictor (or what one is made of: a GEM, an
    ONNX graph, any scorer, with `size` and `threshold`)."""

    def __init__(
        self, scorer: Any, size: int | None = None, threshold: float | None = None, overlay: bool = False
    ) -> None:
        self.predictor = as_predictor(scorer, size, threshold)
        self.size, self.overlay = self.predictor.size, overlay

    def prepare(self, msg: Any, msgtype: str) -> tuple[np.ndarray, torch.Tensor]:
        """Decode a message and squash it to the network size: (RGB frame, float [3,s,s]). Safe to run in
        a decoding thread; raises DataError (UnsupportedEncoding) for a frame it cannot read."""
        rgb = message_to_rgb(msg, msgtype)
        return rgb, self.predictor.preparer.squash(rgb)

    def masks(self, frames: Sequence[np.ndarray], squashed: Sequence[torch.Tensor] | None = None) -> list[np.ndarray]:
        """uint8 {0,1} masks at each frame's size, one scorer call for the batch."""
        if squashed is None:
            squashed = [self.predictor.preparer.squash(f) for f in frames]
        return [o.mask.astype(np.uint8) for o in self.predictor.outputs(list(frames), list(squashed))]

    def outputs(
        self, frames: Sequence[np.ndarray], squashed: Sequence[torch.Tensor] | None = None
    ) -> list[FrameOutput]:
        """Masks and the fields of the mask (mono8, 0/255) and, with `overlay`, overlay (rgb8) messages."""
        result = []
        for frame, mask in zip(frames, self.masks(frames, squashed)):
            over = rgb8_fields(overlay_mask(frame, mask)) if self.overlay else None
            result.append(FrameOutput(mask, mono8_fields(mask), over))
        return result

    def process(self, msg: Any, msgtype: str) -> FrameOutput:
        """One message -> its FrameOutput (the live node's path: one frame per scorer call)."""
        rgb, squashed = self.prepare(msg, msgtype)
        return self.outputs([rgb], [squashed])[0]


__all__ = ["FrameOutput", "FrameProcessor", "LatestFrame", "RateMeter"]
