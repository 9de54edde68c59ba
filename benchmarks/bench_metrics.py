"""Throughput of the GSD-S evaluator (glassgem.evaluation.metrics). A script, not a test: it prints numbers.

    python benchmarks/bench_metrics.py [--n 608] [--size 640x480] [--workers N]

Writes N random GT / prediction PNG pairs (binary, soft and noisy-soft) to a temporary folder, then times
(a) the in-memory evaluator on decoded arrays and (b) the whole `glassgem evaluate-masks` path, PNG
decoding included. Target: >= 100 images/s for 640x480 pairs on a 2-core machine. Wall time depends on
what else runs; the CPU seconds (all threads) show the work itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from glassgem.evaluation.mask_eval import evaluate_pairs, pair_files
from glassgem.evaluation.metrics import GlassMetrics

VARIANTS = ("binary", "soft", "noisy")


def make_pair(rng: np.random.Generator, h: int, w: int, noise: np.ndarray) -> tuple[np.ndarray, ...]:
    """GT (a few glass rectangles) and three predictions: binary (the GT shifted), soft (that blurred like
    an upsampled network output, plus a ramp) and noisy (soft plus N(0, 3) noise: a worst case for PNG
    decoding, since noise barely compresses)."""
    gt = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(0, 4)):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        gt[y0 : y0 + rng.integers(8, h // 2), x0 : x0 + rng.integers(8, w // 2)] = 255
    binary = np.roll(gt, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
    small = binary[::8, ::8].astype(np.float32)  # blur: down 8x, then bilinear up again
    soft = np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    soft = soft * 0.8 + np.linspace(0, 40, w, dtype=np.float32)[None, :]
    shift = int(rng.integers(0, noise.shape[1] - w))
    noisy = soft + noise[:h, shift : shift + w]
    return gt, binary, *(np.clip(m + 0.5, 0, 255).astype(np.uint8) for m in (soft, noisy))


def write_dataset(root: Path, n: int, h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 3, (h, 2 * w)).astype(np.float32)  # one noise field, reused shifted (fast)
    for sub in ("gt",) + VARIANTS:
        (root / sub).mkdir(parents=True)
    for i in range(n):
        for sub, arr in zip(("gt",) + VARIANTS, make_pair(rng, h, w, noise)):
            Image.fromarray(arr).save(root / sub / f"{i:05d}.png", compress_level=1)


def time_in_memory(root: Path, variant: str, n: int) -> float:
    """Seconds to score n pairs already decoded (64 distinct pairs cycled, to bound memory)."""
    from glassgem.io import load_mask, load_prediction

    pairs, _ = pair_files(root / variant, root / "gt")
    arrays = [(load_prediction(p), load_mask(g)) for p, g in pairs[:64]]
    m = GlassMetrics()
    t0 = time.perf_counter()
    for i in range(n):
        m.update(*arrays[i % len(arrays)])
    m.compute()
    return time.perf_counter() - t0


def time_files(root: Path, variant: str, workers: int | None) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of all threads, results) of the evaluate-masks path."""
    t0, c0 = time.perf_counter(), time.process_time()
    pairs, _ = pair_files(root / variant, root / "gt")
    results = evaluate_pairs(pairs, workers=workers, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=608, help="image pairs (default 608, the GSD-S test set)")
    ap.add_argument("--size", default="640x480", help="WxH (default 640x480)")
    ap.add_argument("--workers", type=int, default=None, help="reading threads (default: evaluator's)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.n} pairs of {w}x{h}; {os.cpu_count()} CPUs, load average {load} (other work slows this)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_dataset(root, args.n, h, w)
        print(f"wrote the PNGs in {time.perf_counter() - t0:.1f} s")
        for variant in VARIANTS:
            t_mem = time_in_memory(root, variant, args.n)
            t_files, cpu, res = time_files(root, variant, args.workers)
            print(
                f"{variant:>6}: in memory {args.n / t_mem:6.0f} img/s ({t_mem:5.2f} s) | with PNG decoding "
                f"{args.n / t_files:5.0f} img/s ({t_files:5.2f} s wall, {cpu:5.2f} s CPU) | "
                f"IoU {res['iou']:.4f} F {res['fbeta']:.4f} MAE {res['mae']:.4f} BER {res['ber']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
