"""The two numbers a default model is chosen on: glass found on gdd-dev/val, and glass *invented* on photos
without any. A script that prints numbers, not a test.

    python benchmarks/glass_free_check.py --gdd ../shared/data/gdd-dev --photos PHOTOS [--crops CROPS]
        [--weights DIR ...] [--out DIR]

PHOTOS: the output of `glassgem data photos` (its heldout/ split is used: sources never trained on).
CROPS: optional `glassgem data negatives ... --split val` output (glass-free crops of the val photos).
For each model (default: the shipped one) it runs `glassgem evaluate --report` on each set, as a user
would, and prints IoU, F-beta, MAE, BER on val and, on the glass-free sets, the mean fraction of each
photo predicted as glass and how many photos stay under 1%.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from glassgem.evaluation.report import false_glass_summary


def evaluate(weights: str | None, data: str, split: str | None, report: Path) -> dict:
    cmd = [sys.executable, "-m", "glassgem.cli", "evaluate", "--data", data, "--report", str(report), "--worst", "0"]
    cmd += ["--weights", weights] if weights else []
    cmd += ["--data-split", split] if split else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    metrics = json.loads((report / "metrics.json").read_text())
    with open(report / "per_image.csv", newline="") as f:
        fractions = [float(r["predicted_fraction"]) for r in csv.DictReader(f)]
    metrics.update(false_glass_summary(fractions))
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gdd", required=True, help="gdd-dev folder (val/ is scored)")
    ap.add_argument("--photos", required=True, help="a `glassgem data photos` folder (heldout/ is scored)")
    ap.add_argument("--crops", default=None, help="glass-free crops of the val photos (`glassgem data negatives`)")
    ap.add_argument("--weights", nargs="*", default=[None], help="glassgem dirs (default: the shipped model)")
    ap.add_argument("--out", default="glass_free_check", help="reports go here")
    args = ap.parse_args()
    sets = [("val", args.gdd, "val"), ("heldout photos", str(Path(args.photos) / "heldout"), None)]
    if args.crops:
        sets.append(("val crops", args.crops, None))
    rows = {}
    for w in args.weights:
        name = w or "shipped"
        rows[name] = {
            label: evaluate(w, data, split, Path(args.out) / Path(name).name / label.replace(" ", "_"))
            for label, data, split in sets
        }
        print(f"{name}: done", file=sys.stderr)
    print(
        f"{'model':40s} {'val IoU':>8s} {'F-beta':>7s} {'MAE':>6s} {'BER':>6s}  "
        + "  ".join(f"{label + ' FG (clean)':>24s}" for label, _, _ in sets[1:])
    )
    for name, r in rows.items():
        v = r["val"]
        print(
            f"{name:40s} {v['iou']:8.4f} {v['fbeta']:7.4f} {v['mae']:6.4f} {v['ber']:6.2f}  "
            + "  ".join(
                f"{r[label]['false_glass']:14.4f} ({r[label]['clean']:2d}/{r[label]['n']:2d})"
                for label, _, _ in sets[1:]
            )
        )


if __name__ == "__main__":
    main()
