"""How much of a photo a model calls glass, against how much is glass, by glass share.

IoU averaged over close-ups hides the failure that matters in a wide scene: a model that paints most
of any photo containing glass scores well on photos that are mostly glass and badly on photos where
glass is a small part. `ShareBins` keeps, besides the usual metrics, the predicted and true glass
fractions of every image, overall and per bin of the true glass share:

    none (no glass pixel), < 10%, 10-35%, 35-70%, > 70%

and reports per bin the number of images, mean IoU, mean true and predicted fractions and the area
ratio (sum of predicted fractions / sum of true fractions: 1.0 = the right amount of glass, 3.0 = three
times too much). For the "none" bin IoU is 1 or 0 by convention, so its `false_glass` (mean predicted
fraction) is the number to read. On a set that mixes photos with and without glass, a mean IoU over all
of them rewards predicting nothing (IoU 1 on every glass-free photo), so the totals also give the mean
IoU and area ratio over the photos that contain glass.
"""

from __future__ import annotations

import math
from typing import Any

# (name, lower bound inclusive, upper bound exclusive) of the true glass fraction; "none" is exactly 0
BINS = (
    ("none", 0.0, 0.0),
    ("<10%", 0.0, 0.10),
    ("10-35%", 0.10, 0.35),
    ("35-70%", 0.35, 0.70),
    (">70%", 0.70, 1.0 + 1e-9),
)


def bin_of(glass: float) -> str:
    """The name of the bin a true glass fraction falls in."""
    if glass <= 0.0:
        return "none"
    for name, lo, hi in BINS[1:]:
        if lo <= glass < hi:
            return name
    return BINS[-1][0]


def area_ratio(predicted_sum: float, true_sum: float) -> float:
    """Predicted over true glass area (NaN when there is no true glass)."""
    return predicted_sum / true_sum if true_sum > 0 else math.nan


class ShareBins:
    """Per-bin sums of IoU and of true and predicted glass fractions."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {name: [0, 0.0, 0.0, 0.0] for name, _, _ in BINS}

    def add(self, iou: float, glass: float, predicted: float) -> None:
        s = self.sums[bin_of(glass)]
        s[0] += 1
        s[1] += 0.0 if math.isnan(iou) else iou
        s[2] += glass
        s[3] += predicted

    def merge(self, other: ShareBins) -> None:
        for name, s in other.sums.items():
            self.sums[name] = [a + b for a, b in zip(self.sums[name], s)]

    def totals(self) -> dict[str, float]:
        """Over all images: mean true and predicted fractions and the area ratio; over the images that
        contain glass: their number, mean IoU and area ratio (`*_with_glass`, NaN when there are none)."""
        n = sum(s[0] for s in self.sums.values())
        true = sum(s[2] for s in self.sums.values())
        pred = sum(s[3] for s in self.sums.values())
        glass = [s for name, s in self.sums.items() if name != "none"]
        n_glass = sum(s[0] for s in glass)
        return {
            "true_fraction": true / n if n else math.nan,
            "pred_fraction": pred / n if n else math.nan,
            "area_ratio": area_ratio(pred, true),
            "n_with_glass": int(n_glass),
            "iou_with_glass": sum(s[1] for s in glass) / n_glass if n_glass else math.nan,
            "area_ratio_with_glass": area_ratio(sum(s[3] for s in glass), sum(s[2] for s in glass)),
        }

    def compute(self) -> dict[str, dict[str, Any]]:
        """{bin: {"n", "iou", "true_fraction", "pred_fraction", "area_ratio"}} for the bins with images
        ("none" has "false_glass" instead of an IoU and an area ratio)."""
        out: dict[str, dict[str, Any]] = {}
        for name, (n, iou, true, pred) in self.sums.items():
            if not n:
                continue
            row: dict[str, Any] = {"n": int(n), "true_fraction": true / n, "pred_fraction": pred / n}
            if name == "none":
                row["false_glass"] = pred / n
            else:
                row["iou"] = iou / n
                row["area_ratio"] = area_ratio(pred, true)
            out[name] = row
        return out


def format_bins(bins: dict[str, dict[str, Any]]) -> str:
    """The per-bin table as aligned text."""
    lines = [
        f"{'true glass':<10}  {'n':>4}  {'IoU':>6}  {'true':>6}  {'pred':>6}  {'pred/true':>9}",
        f"{'-' * 10}  {'-' * 4}  {'-' * 6}  {'-' * 6}  {'-' * 6}  {'-' * 9}",
    ]
    for name, _, _ in BINS:
        row = bins.get(name)
        if row is None:
            continue
        iou = f"{row['iou']:.4f}" if "iou" in row else "-"
        ratio = f"{row['area_ratio']:.2f}" if "area_ratio" in row else "-"
        lines.append(
            f"{name:<10}  {row['n']:>4}  {iou:>6}  {row['true_fraction']:>6.3f}  "
            f"{row['pred_fraction']:>6.3f}  {ratio:>9}"
        )
    return "\n".join(lines)
