"""The GSD-S glass-segmentation evaluator: IoU, max F-beta (beta^2 = 0.3), MAE and BER.

Numbers are comparable with the published GSD-S tables (GlassSemNet, GEM): every quantity is computed
per image and then averaged over images, exactly as docs/original.md#metrics describes.

Inputs (one image at a time):
- ground truth: any mask array; if its max is above 127 it is divided by 255, then glass = gt > 0.5
  (`glassgem.io.mask_to_binary`), so 0/1 and 0/255 masks give identical results.
- prediction: a map at the ground truth's size. bool and integer maps whose max is <= 1 are binary 0/1;
  other integer maps are 0..255 and mean value/255; float maps must lie in [0, 1].

Per image (binarisation for IoU and BER: predicted glass = pred >= 0.5):
- IoU = TP / (TP + FP + FN)
- MAE = mean |pred - gt| over pixels, on the map as given (binary for GEM, soft when a soft map is scored)
- BER = 100 * (1 - (TP/(TP+FN) + TN/(TN+FP)) / 2), in percent
- for the 256 thresholds t = k/255 (positive = pred >= t): precision_t = (TP_t + 1e-4)/(#(pred>=t) + 1e-4),
  recall_t = (TP_t + 1e-4)/(#gt + 1e-4). Precision and recall are averaged over images per threshold;
  F-beta = max_t 1.3 * P_t * R_t / (0.3 * P_t + R_t).

How thresholds are applied: every pixel is put in an integer bin, the largest k with pred >= k/255
(a uint8 map's value itself), so one 256-bin histogram per image serves all 256 thresholds. For float
maps the bin is floor(255 * pred + delta) in float64, with delta = 1e-9 for float64 maps and 1e-4 for
float32 (or float16) ones: a value that is k/255 up to float rounding lands in bin k (on the positive
side of threshold k), so only values within delta/255 below a threshold are counted as on it.

Cases the original leaves undefined (it gives NaN, and one NaN makes the mean NaN). By default:
- IoU = 1 for an image with neither glass nor predicted glass (0 when only one of them is empty);
- BER drops the term of a class the image does not contain: BER = 100 * (1 - TN/(TN+FP)) for an image
  without glass and 100 * (1 - TP/(TP+FN)) for an all-glass image.
`compute()` reports how many images hit each case (n_iou_empty, n_ber_no_glass, n_ber_all_glass).
`legacy=True` reproduces the original exactly, NaN and all; its MAE also uses the ground-truth values
as stored (divided by 255 when the max is above 127) instead of the binarised mask, which only differs
for masks that are not clean 0/1 or 0/255.

Memory is constant in the number of images: the accumulator keeps per-threshold precision and recall
sums, not per-image curves. Folders of mask files (`glassgem evaluate-masks`): mask_eval.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError
from ..io import atomic_write_text, mask_to_binary
from .share import ShareBins, format_bins

N_BINS = 256
EPS = 1e-4  # the original's smoothing term in precision/recall
BETA2 = 0.3
# Float slack (in bins) so that a value equal to k/255 up to rounding lands in bin k (module docstring).
_DELTA_F64 = 1e-9
_DELTA_F32 = 1e-4  # float32(k/255) is within 8e-6 bins of k (float16 rounding is coarser: pass float32)


class ImageStats(NamedTuple):
    """Everything the accumulator needs from one image (a few KB, independent of the image size)."""

    hist: np.ndarray  # (2, 256) int64: pixels per prediction bin; row 0 = background GT, row 1 = glass GT
    tp: int  # counts at the pred >= 0.5 binarisation
    fp: int
    fn: int
    tn: int
    abs_err: float  # sum over pixels of |pred - gt|


def _where(name: str | None) -> str:
    return f"{name}: " if name else ""


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; no torch import needed here
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def prediction_levels(pred: np.ndarray, name: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """pred (H, W) -> (bins uint8 (H, W), the float map or None when pred was bool/integer).

    bins[y, x] is the largest k in 0..255 with pred >= k/255, so pred >= k/255 <=> bins >= k.
    """
    a = _as_array(pred)
    if a.ndim != 2:
        raise DataError(f"{_where(name)}prediction must be a 2-D map, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{_where(name)}prediction is empty (shape {a.shape})")
    if a.dtype == bool:
        return a.view(np.uint8) * np.uint8(255), None
    if a.dtype.kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{_where(name)}integer prediction values must lie in 0..255 (or 0/1), "
                f"got {lo}..{hi}; pass a float map in [0, 1] instead"
            )
        a8 = a.astype(np.uint8, copy=False)
        return (a8 * np.uint8(255) if hi <= 1 else a8), None  # max <= 1: a binary 0/1 map
    if a.dtype.kind != "f":
        raise DataError(f"{_where(name)}prediction has unsupported dtype {a.dtype}")
    low, high = float(a.min()), float(a.max())
    if not (0.0 <= low and high <= 1.0):  # also catches NaN
        raise DataError(f"{_where(name)}float prediction values must lie in [0, 1], got {low:g}..{high:g}")
    # float64 arithmetic whatever the input precision, so the only slack is the documented delta.
    x = a.astype(np.float64) * float(N_BINS - 1)  # (H, W)
    x += _DELTA_F64 if a.dtype == np.float64 else _DELTA_F32
    return np.floor(x, out=x).astype(np.uint8), a


def _legacy_gt_values(gt: np.ndarray) -> np.ndarray | None:
    """The GT as the original scores MAE against (value/255 when max > 127), or None if it is binary."""
    g = gt.astype(np.float64)
    if g.max(initial=0) > 127:
        g = g / 255.0
    if np.all((g == 0) | (g == 1)):
        return None
    return g


def _histogram(bins: np.ndarray, glass: np.ndarray) -> np.ndarray:
    """(2, 256) int64 pixel counts per bin for background / glass GT, in a single bincount."""
    code = glass.astype(np.uint16)  # code = 256 * glass + bin
    code <<= 8
    code |= bins
    return np.bincount(code.ravel(), minlength=2 * N_BINS).reshape(2, N_BINS)


def _only_0_255(bins: np.ndarray) -> bool:
    return np.count_nonzero(bins) == np.count_nonzero(bins == 255)


def _binary_histogram(bins: np.ndarray, glass: np.ndarray) -> np.ndarray:
    """`_histogram` for a 0/255 map from three counts (several times faster than a bincount)."""
    n, n_pos, n_glass = bins.size, np.count_nonzero(bins), np.count_nonzero(glass)
    tp = np.count_nonzero(bins & glass)  # 255 & 1 = 1
    hist = np.zeros((2, N_BINS), np.int64)
    hist[1, N_BINS - 1], hist[0, N_BINS - 1] = tp, n_pos - tp
    hist[1, 0], hist[0, 0] = n_glass - tp, n - n_pos - n_glass + tp
    return hist


def image_stats(pred: Any, gt: Any, *, legacy: bool = False, name: str | None = None) -> ImageStats:
    """Per-image sufficient statistics. pred, gt: (H, W) maps as described in the module docstring."""
    gt_raw = _as_array(gt)
    if gt_raw.ndim not in (2, 3):
        raise DataError(f"{_where(name)}ground truth must be a 2-D mask, got shape {gt_raw.shape}")
    bins, soft = prediction_levels(pred, name)
    if bins.shape != gt_raw.shape[:2]:
        raise DataError(
            f"{_where(name)}prediction is {bins.shape[1]}x{bins.shape[0]} (WxH) but the ground "
            f"truth is {gt_raw.shape[1]}x{gt_raw.shape[0]}"
        )
    glass = mask_to_binary(gt_raw)  # (H, W) uint8 {0, 1}

    if soft is None and _only_0_255(bins):
        hist = _binary_histogram(bins, glass)  # (2, 256)
    else:
        hist = _histogram(bins, glass)
    n_glass = int(hist[1].sum())
    n = int(bins.size)
    if soft is None:
        # pred >= 0.5 <=> value/255 >= 0.5 <=> bin >= 128: read it off the histogram.
        tp, fn = int(hist[1, 128:].sum()), int(hist[1, :128].sum())
        fp, tn = int(hist[0, 128:].sum()), int(hist[0, :128].sum())
        k = np.arange(N_BINS, dtype=np.int64)
        abs_err = float(hist[0] @ k + hist[1] @ (N_BINS - 1 - k)) / (N_BINS - 1)
    else:
        # Off-grid values in [127.5/255, 0.5) share bin 127 with values below 0.5: count exactly.
        hard = soft >= 0.5
        n_pos = int(np.count_nonzero(hard))
        tp = int(np.count_nonzero(hard & glass.view(bool)))
        fp, fn = n_pos - tp, n_glass - tp
        tn = n - tp - fp - fn
        abs_err = float(np.abs(soft.astype(np.float64) - glass).sum())
    if legacy:
        g = _legacy_gt_values(gt_raw if gt_raw.ndim == 2 else gt_raw[..., :3].max(axis=2))
        if g is not None:
            p = soft.astype(np.float64) if soft is not None else bins / float(N_BINS - 1)
            abs_err = float(np.abs(p - g).sum())
    return ImageStats(hist, tp, fp, fn, tn, abs_err)


class ImageScore(NamedTuple):
    """One image's own numbers (what `GlassMetrics.add` returns; a per-image report's row)."""

    iou: float  # NaN only in legacy mode, for an image with neither glass nor predicted glass
    mae: float
    ber: float  # percent; NaN only in legacy mode, for an image without glass or all glass
    glass: float  # fraction of the pixels that are glass in the ground truth
    predicted: float  # fraction predicted as glass (pred >= 0.5)
    # The image's precision and recall at the 256 thresholds k/255 (its share of max F-beta, which is a
    # dataset-level number: reports keep them so that `glassgem compare` can resample F-beta too)
    precision: np.ndarray | None = None
    recall: np.ndarray | None = None


class GlassMetrics:
    """Streaming GSD-S metrics: `update(pred, gt)` per image, then `compute()`.

    Keeps sums only (two 256-float arrays and a few scalars), so memory does not grow with the number
    of images; `merge` adds another accumulator's sums (e.g. from another process or worker).
    """

    def __init__(self, legacy: bool = False) -> None:
        self.legacy = legacy
        self.n_images = 0
        self.precision_sum = np.zeros(N_BINS)  # (256,) sum over images of precision at t = k/255
        self.recall_sum = np.zeros(N_BINS)
        self.iou_sum = 0.0
        self.mae_sum = 0.0
        self.ber_sum = 0.0
        self.n_iou_empty = 0
        self.n_ber_no_glass = 0
        self.n_ber_all_glass = 0
        self.share = ShareBins()  # predicted and true glass area, per bin of glass share (share.py)

    def update(self, pred: Any, gt: Any, name: str | None = None) -> ImageScore:
        """Score one image: pred and gt are (H, W) maps of the same size (module docstring)."""
        return self.add(image_stats(pred, gt, legacy=self.legacy, name=name))

    def add(self, s: ImageStats) -> ImageScore:
        """Accumulate the statistics of one image computed by `image_stats`; returns its own scores."""
        # Pixels at or above threshold k, in total and on glass: reversed cumulative sums. (256,)
        n_pos = np.cumsum(s.hist.sum(axis=0)[::-1])[::-1]
        tp_t = np.cumsum(s.hist[1, ::-1])[::-1]
        n_glass = s.tp + s.fn
        n = s.tp + s.fp + s.fn + s.tn
        precision = (tp_t + EPS) / (n_pos + EPS)
        recall = (tp_t + EPS) / (n_glass + EPS)
        self.precision_sum += precision
        self.recall_sum += recall
        score = ImageScore(self._iou(s), s.abs_err / n, self._ber(s), n_glass / n, (s.tp + s.fp) / n, precision, recall)
        self.mae_sum += score.mae
        self.iou_sum += score.iou
        self.ber_sum += score.ber
        self.share.add(score.iou, score.glass, score.predicted)
        self.n_images += 1
        return score

    def _iou(self, s: ImageStats) -> float:
        union = s.tp + s.fp + s.fn
        if union == 0:
            self.n_iou_empty += 1
            return math.nan if self.legacy else 1.0
        return s.tp / union

    def _ber(self, s: ImageStats) -> float:
        pos, neg = s.tp + s.fn, s.tn + s.fp
        if pos == 0 or neg == 0:
            if pos == 0:
                self.n_ber_no_glass += 1
            else:
                self.n_ber_all_glass += 1
            if self.legacy:
                return math.nan
            rate = s.tn / neg if pos == 0 else s.tp / pos  # the one class the image has
            return 100.0 * (1.0 - rate)
        return 100.0 * (1.0 - 0.5 * (s.tp / pos + s.tn / neg))

    def merge(self, other: GlassMetrics) -> None:
        if other.legacy != self.legacy:
            raise ValueError("cannot merge a legacy accumulator with a default one")
        self.n_images += other.n_images
        self.precision_sum += other.precision_sum
        self.recall_sum += other.recall_sum
        for key in ("iou_sum", "mae_sum", "ber_sum", "n_iou_empty", "n_ber_no_glass", "n_ber_all_glass"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.share.merge(other.share)

    def compute(self) -> dict[str, Any]:
        """{"iou", "fbeta", "mae", "ber" (percent), "n_images", "n_iou_empty", "n_ber_no_glass",
        "n_ber_all_glass", "legacy"}, means over images; plus "true_fraction", "pred_fraction" and
        "area_ratio" (predicted / true glass area) and "bins" (the same per glass-share bin: share.py)."""
        if self.n_images == 0:
            raise DataError("no images were evaluated")
        p = self.precision_sum / self.n_images  # (256,) mean precision per threshold
        r = self.recall_sum / self.n_images
        return {
            "iou": self.iou_sum / self.n_images,
            "fbeta": float(max_fbeta(p, r)),
            "mae": self.mae_sum / self.n_images,
            "ber": self.ber_sum / self.n_images,
            "n_images": self.n_images,
            "n_iou_empty": self.n_iou_empty,
            "n_ber_no_glass": self.n_ber_no_glass,
            "n_ber_all_glass": self.n_ber_all_glass,
            "legacy": self.legacy,
            **self.share.totals(),
            "bins": self.share.compute(),
        }


def max_fbeta(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Max F-beta from mean precision and recall curves [..., 256] (over the last axis)."""
    return ((1.0 + BETA2) * precision * recall / (BETA2 * precision + recall)).max(axis=-1)


def format_table(results: dict[str, Any]) -> str:
    """A small aligned text table of `GlassMetrics.compute()` output."""
    legacy = bool(results.get("legacy", False))
    iou_note = "IoU NaN (legacy)" if legacy else "IoU := 1"
    ber_note = "BER NaN (legacy)" if legacy else "BER over one class"
    rows = [
        ("IoU", f"{results['iou']:.4f}", "higher is better"),
        ("F-beta (max, b2=0.3)", f"{results['fbeta']:.4f}", "higher is better"),
        ("MAE", f"{results['mae']:.4f}", "lower is better"),
        ("BER (%)", f"{results['ber']:.2f}", "lower is better"),
        ("images", str(results["n_images"]), ""),
        ("no glass, none predicted", str(results["n_iou_empty"]), iou_note),
        ("images without glass", str(results["n_ber_no_glass"]), ber_note),
        ("images all glass", str(results["n_ber_all_glass"]), ber_note),
    ]
    if "area_ratio" in results:
        ratio = results["area_ratio"]
        rows.append(
            (
                "glass area, pred / true",
                "-" if math.isnan(ratio) else f"{ratio:.2f}",
                f"{results['pred_fraction']:.3f} / {results['true_fraction']:.3f} of the pixels",
            )
        )
        if 0 < results["n_with_glass"] < results["n_images"]:
            rows.append(
                (
                    "IoU, photos with glass",
                    f"{results['iou_with_glass']:.4f}",
                    f"{results['n_with_glass']} photos; glass area pred / true {results['area_ratio_with_glass']:.2f}",
                )
            )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'metric':<{w0}}  {'value':>{w1}}", f"{'-' * w0}  {'-' * w1}"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    if results.get("bins"):
        lines += [
            "",
            "by true glass share (IoU and predicted / true glass area per bin):",
            format_bins(results["bins"]),
        ]
    return "\n".join(lines)


def write_json(path: str | Path, results: dict[str, Any]) -> None:
    """Write results atomically as standard JSON (a NaN of legacy mode becomes null)."""
    import json

    atomic_write_text(path, json.dumps(_json_clean(results), indent=2) + "\n")


def _json_clean(value: Any) -> Any:
    """NaN -> None, in nested dicts too (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
