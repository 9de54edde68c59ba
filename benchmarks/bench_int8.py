"""int8 (onnxruntime dynamic quantization) vs fp32 ONNX graphs: per-photo latency, and masks on a labelled split.

    .venv/bin/python benchmarks/bench_int8.py --onnx gem-s.onnx gem-lite.onnx      # exports of `glassgem export onnx`
    .venv/bin/python benchmarks/bench_int8.py --onnx gem-s.onnx --limit 10 --no-spin

For each fp32 graph: the int8 graph of `glassgem.inference.quantize.quantize_int8` (made in memory), then
- latency: one squashed photo, batch 1, `--threads` onnxruntime threads, each runner timed in blocks of
  its own in the order fp32 int8 int8 fp32 (a change of the machine's load hits both alike); medians;
- accuracy on `--data`/`--split` (gdd-dev val): each photo scored as `glassgem predict` does (squashed
  to the graph's size, scores resized back, glass where the glass score beats the background's); the
  IoU of each precision against the true masks (GlassMetrics: the mean of per-photo IoUs), and the share
  of all pixels where the int8 and fp32 masks agree (and the lowest share of one photo).
The load average is printed before and after: latencies are only comparable at the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", nargs="+", required=True, metavar="FILE", help="fp32 graphs of `glassgem export onnx`")
    shared = Path(os.environ.get("GLASSGEM_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    p.add_argument("--data", type=Path, default=shared / "data" / "gdd-dev", help="dataset folder (default gdd-dev)")
    p.add_argument("--split", default="val", help='split of --data ("": a folder without splits, e.g. crops)')
    p.add_argument("--limit", type=int, default=None, help="only the first N photos of the split")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=10, help="timed runs per precision (split over two blocks)")
    p.add_argument("--scope", default=None, help="quantize only this GEM module's layers (e.g. encoder)")
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor (default: per output channel, as glassgem predict)",
    )
    p.add_argument(
        "--weight-type",
        choices=("u8", "s8"),
        default=None,
        help="int8 weights' type (default: this CPU's, as glassgem predict: s8 with VNNI, else u8)",
    )
    p.add_argument("--no-spin", action="store_true", help="idle worker threads sleep (for a busy machine)")
    return p.parse_args()


def _pairs(root: Path, split: str, limit: int | None) -> list[tuple[Path, Path]]:
    from glassgem.data.layouts import find_pairs

    return [(p.image_path, p.mask_path) for p in find_pairs(root, split=split or None)][:limit]


def _latency(scorers: dict, x: np.ndarray, warmup: int, runs: int) -> dict[str, float]:
    """Median ms per call of each scorer, timed in blocks A B B A."""
    times: dict[str, list[float]] = {k: [] for k in scorers}
    order = list(scorers) + list(scorers)[::-1]
    for name in order:
        for _ in range(warmup):
            scorers[name](x)
        for _ in range(max(1, runs // 2)):
            t = time.perf_counter()
            scorers[name](x)
            times[name].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _masks(scorer, rgb: np.ndarray, size: int) -> np.ndarray:
    from glassgem.inference.protocol import glass_mask, squash, unsquash

    scores = scorer(squash(rgb, size)[None].numpy())
    return glass_mask(unsquash(scores, rgb.shape[:2])[0]).numpy()


def _accuracy(scorers: dict, pairs: list[tuple[Path, Path]], size: int) -> dict[str, float]:
    from glassgem.evaluation.metrics import GlassMetrics
    from glassgem.io import load_image, load_mask

    metrics = {k: GlassMetrics() for k in scorers}
    agree = total = 0
    worst = 1.0
    t0 = time.perf_counter()
    for i, (image, mask) in enumerate(pairs, 1):
        rgb, gt = load_image(image), load_mask(mask)
        masks = {k: _masks(s, rgb, size) for k, s in scorers.items()}
        for k, m in masks.items():
            metrics[k].update(m, gt, name=image.name)
        same = int(np.count_nonzero(masks["fp32"] == masks["int8"]))
        agree, total = agree + same, total + masks["fp32"].size
        worst = min(worst, same / masks["fp32"].size)
        if i % 10 == 0 or i == len(pairs):
            print(f"  {i}/{len(pairs)} photos, {i / (time.perf_counter() - t0):.2f} photos/s", file=sys.stderr)
    return {
        **{f"iou_{k}": m.compute()["iou"] for k, m in metrics.items()},
        "agreement": agree / total,
        "worst_photo_agreement": worst,
    }


def main() -> None:
    args = _args()
    import onnxruntime

    from glassgem.inference.onnx_runner import OnnxScorer
    from glassgem.inference.protocol import squash
    from glassgem.inference.quantize import int8_weight_type, quantize_int8
    from glassgem.io import load_image

    pairs = _pairs(args.data, args.split, args.limit)
    weight_type = args.weight_type or int8_weight_type()
    print(
        f"onnxruntime {onnxruntime.__version__}, {args.threads} threads, batch 1, spinning "
        f"{'off' if args.no_spin else 'on'}, {os.cpu_count()} cores, {len(pairs)} photos of {args.data}/"
        f"{args.split}; int8 layers: {args.scope or 'all'}, per {'tensor' if args.per_tensor else 'channel'}, "
        f"{weight_type} weights; "
        f"load average before: {os.getloadavg()}"
    )
    rows = []
    for path in map(Path, args.onnx):
        fp32 = path.read_bytes()
        t = time.perf_counter()
        int8 = quantize_int8(
            fp32, str(path), scope=args.scope, per_channel=not args.per_tensor, weight_type=weight_type
        )
        quantize_s = time.perf_counter() - t
        scorers = {
            k: OnnxScorer.from_bytes(b, f"{path.name} {k}", threads=args.threads, spinning=not args.no_spin)
            for k, b in (("fp32", fp32), ("int8", int8))
        }
        size = scorers["fp32"].square_size()
        x = squash(load_image(pairs[0][0]), size)[None].numpy()
        ms = _latency(scorers, x, args.warmup, args.runs)
        acc = _accuracy(scorers, pairs, size)
        rows.append((path.name, size, len(fp32), len(int8), quantize_s, ms, acc))
        print(
            f"{path.name}: {size}², fp32 {ms['fp32']:.0f} ms, int8 {ms['int8']:.0f} ms per photo; IoU fp32 "
            f"{acc['iou_fp32']:.4f}, int8 {acc['iou_int8']:.4f}; masks agree on {100 * acc['agreement']:.3f}%"
        )
    print(f"load average after: {os.getloadavg()}\n")
    print(
        "| graph | fp32 ms | int8 ms | speed-up | MiB fp32 → int8 | IoU fp32 | IoU int8 | ΔIoU | masks agree "
        "(worst photo) | quantize s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, size, n32, n8, qs, ms, acc in rows:
        print(
            f"| {name} {size}² | {ms['fp32']:.0f} | {ms['int8']:.0f} | {ms['fp32'] / ms['int8']:.2f}× | "
            f"{n32 / 2**20:.1f} → {n8 / 2**20:.1f} | {acc['iou_fp32']:.4f} | {acc['iou_int8']:.4f} | "
            f"{acc['iou_int8'] - acc['iou_fp32']:+.4f} | {100 * acc['agreement']:.3f}% "
            f"({100 * acc['worst_photo_agreement']:.2f}%) | {qs:.1f} |"
        )


if __name__ == "__main__":
    main()
