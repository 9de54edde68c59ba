"""Training throughput (images/s) of a full GEM step: forward, criterion, backward, AdamW step.

    python benchmarks/bench_train.py [--preset gem-tiny] [--batch 2] [--size 384] [--steps 5] [--threads 2]
                                     [--device cpu|cuda]

Random weights and random images with a glass rectangle (every crop holds both classes), the preset's
loss settings (12,544 mask points for gem-tiny), one process, fp32 unless --mixed-precision bf16. Random
draws come from one CPU generator per image, as in `glassgem train` (that is what made CUDA steps slow
before the mask-loss points were drawn on the device). Prints the step's median and its split into
forward, criterion and backward + optimiser.
A script, not a test: it prints numbers, with the load average so a busy machine shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from glassgem import GEM
from glassgem.config import apply_overrides, train_preset
from glassgem.train.engine import build_criterion
from glassgem.train.optim import build_optimizer
from glassgem.train.targets import targets_from_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gem-tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. num_points=4096")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = apply_overrides(train_preset(args.preset), args.set)
    model = GEM(cfg.model).train().to(device)
    criterion = build_criterion(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    images = (torch.rand(args.batch, 3, args.size, args.size) * 255).to(device)
    sem = torch.zeros(args.batch, args.size, args.size, dtype=torch.long)
    sem[:, args.size // 5 : args.size * 3 // 4, args.size // 4 : args.size * 2 // 3] = 1
    targets = targets_from_batch(sem.to(device))
    phases: dict[str, list[float]] = {"step": [], "forward": [], "criterion": [], "backward + AdamW": []}
    for i in range(args.warmup + args.steps):
        gens = [torch.Generator().manual_seed(1000 * i + b) for b in range(args.batch)]
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16"):
            outputs = model(images, targets, generators=gens)
            sync()
            t1 = time.perf_counter()
            loss = criterion(outputs, targets, gens)["loss"]
            sync()
            t2 = time.perf_counter()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= args.warmup:
            for name, dt in zip(phases, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)):
                phases[name].append(dt)
    med = statistics.median(phases["step"])
    print(
        f"{args.preset} train step on {device}, batch {args.batch}, {args.size}², {args.threads} threads, "
        f"{args.mixed_precision}: median {med:.2f} s/step over {args.steps} steps = "
        f"{args.batch / med:.2f} images/s (min {min(phases['step']):.2f} s); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("  " + ", ".join(f"{name} {statistics.median(t):.3f} s" for name, t in list(phases.items())[1:]))


if __name__ == "__main__":
    main()
