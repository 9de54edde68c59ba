"""Is model B better than model A on the same images, or is the difference noise?

A validation set of ~100 photos moves by +-0.01 IoU between two checkpoints of the same run, so a mean
alone cannot tell a better model from a luckier one. `compare_reports` pairs two per-image reports
(`glassgem evaluate ... --report DIR` writes `DIR/per_image.csv`) by image name and gives, for IoU, MAE
and BER (per-image metrics) and max F-beta (a dataset-level number, from the per-image precision and
recall curves in `DIR/per_image_fbeta.npz`, resampled as a whole):

- both means and the mean of the per-image differences B - A;
- a 95% paired bootstrap confidence interval of that difference (resample images with replacement,
  percentile interval): the pairing removes the images' own difficulty, which dominates the spread;
- an approximate two-sided p-value from the same resamples (twice the fraction of resampled mean
  differences on the far side of 0);
- how many images B makes better, worse and unchanged (within `tie`), and the largest changes.

`glassgem compare A B [--plot FILE]` prints this and can draw B's per-image IoU against A's.
Deterministic: the resampling uses its own seeded generator.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes
from .metrics import N_BINS, max_fbeta
from .report import CSV_FILE, CURVES_FILE

# metric -> True when higher is better
METRICS = {"iou": True, "mae": False, "ber": False}
LABELS = {"iou": "IoU", "fbeta": "F-beta", "mae": "MAE", "ber": "BER (%)"}


@dataclass(frozen=True)
class PerImage:
    """One per-image report: where it came from and {name: {metric: value}} in file order."""

    path: Path
    rows: dict[str, dict[str, float]]


def report_csv(path: str | Path) -> Path:
    """A report folder (its per_image.csv) or the CSV file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / CSV_FILE
    if not p.is_file():
        raise DataError(f"{p}: no per-image report here (write one with `glassgem evaluate ... --report DIR`)")
    return p


def read_per_image(path: str | Path) -> PerImage:
    """Read a per_image.csv (`glassgem.evaluation.report`); every problem is named with the file and line."""
    p = report_csv(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read the report ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("name", *METRICS) if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{p}: not a per-image report: no column(s) {', '.join(missing)} "
            f"(header: {','.join(reader.fieldnames or []) or 'empty'})"
        )
    rows: dict[str, dict[str, float]] = {}
    for line, row in enumerate(reader, start=2):
        name = row["name"]
        if name in rows:
            raise DataError(f"{p}, line {line}: image {name!r} appears twice")
        try:
            rows[name] = {m: float(row[m]) for m in METRICS}
        except (TypeError, ValueError):
            raise DataError(f"{p}, line {line}: a value of {', '.join(METRICS)} is not a number") from None
    if not rows:
        raise DataError(f"{p}: the report has no images")
    return PerImage(p, rows)


def _resample_counts(n: int, resamples: int, seed: int):
    """Bootstrap resamples of n images as count matrices [chunk, n] (how often each image was drawn),
    in chunks of bounded size; the same seed gives the same resamples for every statistic."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        c = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(c, n)) + n * np.arange(c)[:, None]
        yield np.bincount(idx.ravel(), minlength=c * n).reshape(c, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """Means over images of `values` [n, ...] for each bootstrap resample: [resamples, ...]."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError("bootstrap needs values for at least one image")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = values.shape[0]
    flat = values.reshape(n, -1)
    out = np.concatenate([counts @ flat / n for counts in _resample_counts(n, resamples, seed)])
    return out.reshape((resamples,) + values.shape[1:])


def interval(stats: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, p) of resampled differences: the percentile interval and an approximate two-sided
    p-value for "the difference is 0" (twice the smaller tail beyond 0, at most 1; 1 if all are 0)."""
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    if not np.any(stats):
        return 0.0, 0.0, 1.0
    p = 2.0 * min(float(np.mean(stats <= 0.0)), float(np.mean(stats >= 0.0)))
    return float(low), float(high), float(min(1.0, p))


def paired_bootstrap(
    diff: np.ndarray, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(low, high, p) for the mean over images of per-image differences `diff` (see `interval`)."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 1:
        raise ValueError("paired_bootstrap needs a 1-D array of per-image differences")
    return interval(bootstrap_means(diff, resamples, seed), level)


def read_curves(report: PerImage) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """{name: (precision, recall)} from the report's per_image_fbeta.npz, or None if it has none
    (reports written before glassgem kept the curves)."""
    path = report.path.parent / CURVES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            names, precision, recall = z["names"], z["precision"], z["recall"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a per-image F-beta file ({e})") from None
    if precision.shape != recall.shape or precision.shape != (len(names), N_BINS):
        raise DataError(
            f"{path}: expected precision and recall of shape ({len(names)}, {N_BINS}), got "
            f"{precision.shape} and {recall.shape}"
        )
    return {str(n): (p, r) for n, p, r in zip(names, precision, recall)}


def _fbeta_comparison(ca, cb, names: list[str], resamples: int, seed: int) -> dict[str, Any]:
    """Max F-beta of A and B on `names`, and the paired bootstrap of its difference (the same image
    resamples for both models)."""
    pa = np.stack([ca[n][0] for n in names])
    ra = np.stack([ca[n][1] for n in names])
    pb = np.stack([cb[n][0] for n in names])
    rb = np.stack([cb[n][1] for n in names])
    fa, fb = float(max_fbeta(pa.mean(0), ra.mean(0))), float(max_fbeta(pb.mean(0), rb.mean(0)))
    # one pass over the resamples: the four mean curves per resample, then each one's max F-beta
    means = bootstrap_means(np.stack([pa, ra, pb, rb], axis=1), resamples, seed)  # [R, 4, 256]
    diffs = max_fbeta(means[:, 2], means[:, 3]) - max_fbeta(means[:, 0], means[:, 1])
    low, high, p = interval(diffs)
    return {
        "n": len(names),
        "mean_a": fa,
        "mean_b": fb,
        "diff": fb - fa,
        "ci95": [low, high],
        "p": p,
        "higher_is_better": True,
        "b_better": None,
        "b_worse": None,
        "unchanged": None,
        "largest_changes": [],
    }


def compare_reports(
    a: str | Path | PerImage,
    b: str | Path | PerImage,
    resamples: int = 10_000,
    seed: int = 0,
    tie: float = 0.005,
    top: int = 5,
) -> dict[str, Any]:
    """Paired comparison of two per-image reports (module docstring). Differences are B - A; `tie`:
    |change| at most this counts as unchanged (in the metric's unit; BER: tie x 100). Legacy NaN
    values drop that image from that metric only."""
    ra = a if isinstance(a, PerImage) else read_per_image(a)
    rb = b if isinstance(b, PerImage) else read_per_image(b)
    common = [n for n in ra.rows if n in rb.rows]
    if not common:
        raise DataError(f"{ra.path} and {rb.path} share no image names: were they made on the same images?")
    out: dict[str, Any] = {
        "a": str(ra.path),
        "b": str(rb.path),
        "n_a": len(ra.rows),
        "n_b": len(rb.rows),
        "n_common": len(common),
        "only_in_a": [n for n in ra.rows if n not in rb.rows],
        "only_in_b": [n for n in rb.rows if n not in ra.rows],
        "resamples": resamples,
        "seed": seed,
        "tie": tie,
    }
    results: dict[str, dict[str, Any]] = {}
    ca, cb = read_curves(ra), read_curves(rb)
    lacking = [str(r.path.parent / CURVES_FILE) for r, c in ((ra, ca), (rb, cb)) if c is None]
    out["fbeta_missing"] = lacking  # F-beta needs both reports' curves
    if ca is not None and cb is not None:  # not lacking
        with_curves = [n for n in common if n in ca and n in cb]
        if with_curves:
            results["fbeta"] = _fbeta_comparison(ca, cb, with_curves, resamples, seed)
    for m, higher in METRICS.items():
        va = np.array([ra.rows[n][m] for n in common])
        vb = np.array([rb.rows[n][m] for n in common])
        ok = ~(np.isnan(va) | np.isnan(vb))
        names = [n for n, k in zip(common, ok) if k]
        va, vb = va[ok], vb[ok]
        if va.size == 0:
            continue
        diff = vb - va
        low, high, p = paired_bootstrap(diff, resamples, seed)
        gain = diff if higher else -diff  # > 0: B is better on that image
        t = tie * (100.0 if m == "ber" else 1.0)
        order = np.argsort(diff, kind="stable")
        movers = [
            {"name": names[i], "a": float(va[i]), "b": float(vb[i]), "change": float(diff[i])}
            for i in (list(order[:top]) + list(order[::-1][:top]))
            if diff[i] != 0.0
        ]
        results[m] = {
            "n": int(va.size),
            "mean_a": float(va.mean()),
            "mean_b": float(vb.mean()),
            "diff": float(diff.mean()),
            "ci95": [low, high],
            "p": p,
            "higher_is_better": higher,
            "b_better": int(np.sum(gain > t)),
            "b_worse": int(np.sum(gain < -t)),
            "unchanged": int(np.sum(np.abs(gain) <= t)),
            "largest_changes": sorted({d["name"]: d for d in movers}.values(), key=lambda d: d["change"]),
        }
    out["metrics"] = {m: results[m] for m in LABELS if m in results}  # the GSD-S tables' order
    return out


def verdict(m: str, r: dict[str, Any]) -> str:
    """One line: is B better, worse, or not distinguishable from A on metric m?"""
    low, high = r["ci95"]
    if low <= 0.0 <= high:
        return f"{LABELS[m]}: no significant difference (the 95% interval contains 0, p = {r['p']:.2f})"
    better = (low > 0.0) == r["higher_is_better"]
    return f"{LABELS[m]}: B is {'better' if better else 'worse'} than A (95% interval excludes 0, p = {r['p']:.3f})"


def format_comparison(result: dict[str, Any]) -> str:
    """The printed table of `compare_reports`."""
    lines = [
        f"A: {result['a']} ({result['n_a']} images)",
        f"B: {result['b']} ({result['n_b']} images)",
        f"{result['n_common']} images in both"
        + (
            f"; {len(result['only_in_a'])} only in A, {len(result['only_in_b'])} only in B"
            if result["only_in_a"] or result["only_in_b"]
            else ""
        ),
        "",
    ]
    header = ("metric", "A", "B", "B - A", "95% CI (paired bootstrap)", "B better/worse/same")
    rows = []
    for m, r in result["metrics"].items():
        digits = 2 if m == "ber" else 4
        low, high = r["ci95"]
        rows.append(
            (
                LABELS[m],
                f"{r['mean_a']:.{digits}f}",
                f"{r['mean_b']:.{digits}f}",
                f"{r['diff']:+.{digits}f}",
                f"[{low:+.{digits}f}, {high:+.{digits}f}]",
                "-" if r["b_better"] is None else f"{r['b_better']}/{r['b_worse']}/{r['unchanged']}",
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    lines.append("  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip())
    lines.extend("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows)
    lines.append(
        f"(B - A per image, mean over images; {result['resamples']} resamples, seed {result['seed']}; "
        f"same = within {result['tie']:g}, BER within {result['tie'] * 100:g})"
    )
    if result.get("fbeta_missing"):
        lines.append(
            f"(no F-beta: {' and '.join(result['fbeta_missing'])} missing; reports written by this "
            "version keep the per-image curves it needs)"
        )
    else:
        lines.append("(F-beta is a dataset-level number: resampled as a whole, no per-image counts)")
    lines.append("")
    lines.extend(verdict(m, r) for m, r in result["metrics"].items())
    iou = result["metrics"].get("iou")
    if iou and iou["largest_changes"]:
        lines.append("")
        lines.append("largest IoU changes (A -> B):")
        lines.extend(
            f"  {d['name']}: {d['a']:.3f} -> {d['b']:.3f} ({d['change']:+.3f})" for d in iou["largest_changes"]
        )
    return "\n".join(lines)


def short_label(path: str | Path) -> str:
    """A report's name for a plot: its folder's last two parts (per_image.csv dropped)."""
    p = Path(path)
    if p.name == CSV_FILE:
        p = p.parent
    return "/".join(p.parts[-2:])


def plot_comparison(
    a: PerImage,
    b: PerImage,
    path: str | Path,
    labels: Sequence[str] | None = None,
    metric: str = "iou",
    tie: float = 0.005,
) -> Path:
    """Per-image `metric` of B against A (one dot per image in both, the diagonal = no change), coloured
    as `compare_reports` counts them: better, worse, or within `tie`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
    if fmt not in ("png", "jpeg", "svg", "pdf"):
        raise DataError(f"{path}: the plot must be .png, .jpg, .svg or .pdf")
    names = [n for n in a.rows if n in b.rows]
    va = np.array([a.rows[n][metric] for n in names])
    vb = np.array([b.rows[n][metric] for n in names])
    la, lb = labels or ("A", "B")
    t = tie * (100.0 if metric == "ber" else 1.0)
    gain = (vb - va) if METRICS[metric] else (va - vb)
    fig = Figure(figsize=(5.6, 5.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    hi = 1.0 if metric != "ber" else max(100.0, float(np.nanmax(np.r_[va, vb])))
    ax.plot([0, hi], [0, hi], color="0.6", lw=1, zorder=0)
    for sel, color, what in (
        (gain > t, "tab:green", "B better"),
        (gain < -t, "tab:red", "B worse"),
        (np.abs(gain) <= t, "0.45", f"same (within {t:g})"),
    ):
        ax.scatter(va[sel], vb[sel], s=16, color=color, label=f"{what} ({int(sel.sum())})")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{LABELS[metric]} per image, A: {la}", fontsize=8)
    ax.set_ylabel(f"{LABELS[metric]} per image, B: {lb}", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"{len(names)} images: mean {LABELS[metric]} {np.nanmean(va):.4f} (A) vs {np.nanmean(vb):.4f} (B)", fontsize=9
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return atomic_write_bytes(path, buf.getvalue())


def run_compare(
    a: str | Path,
    b: str | Path,
    resamples: int = 10_000,
    seed: int = 0,
    tie: float = 0.005,
    plot: str | Path | None = None,
) -> tuple[dict[str, Any], str]:
    """The `glassgem compare` job: (result, printed text); writes the plot when asked."""
    if resamples < 100:
        raise ConfigError(f"--resamples must be at least 100, got {resamples}")
    if not math.isfinite(tie) or tie < 0:
        raise ConfigError(f"--tie must be 0 or more, got {tie}")
    ra, rb = read_per_image(a), read_per_image(b)
    result = compare_reports(ra, rb, resamples=resamples, seed=seed, tie=tie)
    text = format_comparison(result)
    if plot is not None:
        written = plot_comparison(ra, rb, plot, labels=(short_label(ra.path), short_label(rb.path)), tie=tie)
        result["plot"] = str(written)
        text += f"\n\nplot: {written}"
    return result, text
