"""Time of the GEM criterion (matching + all loss terms, forward and backward). A script: it prints numbers.

    python benchmarks/bench_criterion.py [--batch 8] [--size 384] [--layers 9] [--points 12544] [--device cpu]

Fake model outputs of the paper's shapes (Q = 100 queries, 100 DN queries, 3 logits, masks at 1/4) on
semantic maps with background + glass, so every image has 2 GT masks (DN scalar 50).
"""

from __future__ import annotations

import argparse
import time

import torch

from glassgem.train.losses import GEMCriterion
from glassgem.train.targets import targets_from_batch


def fake_prediction(b: int, q: int, size: int, device: str) -> dict:
    return {
        "pred_logits": torch.randn(b, q, 3, device=device, requires_grad=True),
        "pred_masks": torch.randn(b, q, size // 4, size // 4, device=device, requires_grad=True),
        "pred_boxes": torch.rand(b, q, 4, device=device).requires_grad_(),
    }


def fake_outputs(b: int, size: int, layers: int, device: str) -> dict:
    out = fake_prediction(b, 100, size, device)
    out["aux_outputs"] = [fake_prediction(b, 100, size, device) for _ in range(layers)]
    out["proposal_cls_logits"] = torch.randn(b, 2, size // 16, size // 16, device=device, requires_grad=True)
    dn = fake_prediction(b, 100, size, device)
    dn["aux_outputs"] = [fake_prediction(b, 100, size, device) for _ in range(layers)]
    dn["scalar"], dn["single_pad"] = 50, 2
    out["dn_outputs"] = dn
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--points", type=int, default=12544)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    sem = torch.zeros(args.batch, args.size, args.size, dtype=torch.long)
    sem[:, args.size // 4 : args.size // 2, args.size // 8 :] = 1
    targets = [{k: v.to(args.device) for k, v in t.items()} for t in targets_from_batch(sem)]
    crit = GEMCriterion(num_points=args.points).to(args.device)
    out = fake_outputs(args.batch, args.size, args.layers, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    gen = torch.Generator(device=args.device).manual_seed(0)
    for i in range(args.repeats + 1):  # the first run warms up
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            crit.matcher(out, targets, gen)
        sync()
        t1 = time.perf_counter()
        losses = crit(out, targets, gen)
        sync()
        t2 = time.perf_counter()
        losses["loss"].backward()
        sync()
        t3 = time.perf_counter()
        if i:
            print(
                f"batch {args.batch} size {args.size} layers {args.layers} points {args.points} "
                f"({len(losses) - 1} terms): one matching {1e3 * (t1 - t0):.0f} ms, "
                f"criterion forward {1e3 * (t2 - t1):.0f} ms, backward {1e3 * (t3 - t2):.0f} ms"
            )


if __name__ == "__main__":
    main()
