"""CLIP image-text score for filtering generated images.

Score = 100 x cosine(image embedding, text embedding), the scale of CLIPScore and of the original
release's `clip_sim_large_than_20.txt` list (images with similarity > 20 to their prompt).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ...hub.refs import check_ref, load_or_raise


class ClipScorer:
    def __init__(self, model: str | os.PathLike, device: torch.device | str = "cpu") -> None:
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        check_ref(model, "CLIP model")
        clip = load_or_raise("CLIP model", model, CLIPModel.from_pretrained)
        # the ignore: transformers wraps PreTrainedModel.to with functools.wraps, whose type is not a bound method
        self.model = clip.to(device).eval()  # type: ignore[arg-type]
        self.tokenizer = load_or_raise("CLIP tokenizer", model, CLIPTokenizer.from_pretrained)
        self.processor = load_or_raise("CLIP image processor", model, CLIPImageProcessor.from_pretrained)
        self.device = torch.device(device)
        self.name = str(model)

    @torch.no_grad()
    def score(self, image: Any, prompt: str) -> float:
        """100 x cosine similarity of a PIL image and a prompt (about -100..100; ~20-35 for a match)."""
        pixels = self.processor(images=[image], return_tensors="pt").pixel_values.to(self.device)
        text = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        out = self.model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixels)
        image_emb = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        text_emb = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        return float(100.0 * (image_emb * text_emb).sum())
