"""Is model B better than model A on the same images, or is the difference noise?

A validation set of ~100 photos moves by +-0.01 IoU between two checkpoints of the same run, so a mean
alone cannot tell a better model from a luckier one. `compare_reports` pairs two per-image reports
(`glassgem evaluate ... --report DIR` writes `DIR/per_image.csv`) by image name and gives, for IoU, MAE
and BER (the per-image metrics; max F-beta is a dataset-level number and has no per-image value):

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .errors import ConfigError, DataError

REPORT_CSV = "per_image.csv"
# metric -> True when higher is better
METRICS = {"iou": True, "mae": False, "ber": False}
LABELS = {"iou": "IoU", "mae": "MAE", "ber": "BER (%)"}


@dataclass(frozen=True)
class PerImage:
    """One per-image report: where it came from and {name: {metric: value}} in file order."""

    path: Path
    rows: dict[str, dict[str, float]]


def report_csv(path: str | Path) -> Path:
    """A report folder (its per_image.csv) or the CSV file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_CSV
    if not p.is_file():
        raise DataError(f"{p}: no per-image report here (write one with `glassgem evaluate ... --report DIR`)")
    return p


def read_per_image(path: str | Path) -> PerImage:
    """Read a per_image.csv (`glassgem.report`); every problem is named with the file and line."""
    p = report_csv(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read the report ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("name", *METRICS) if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{p}: not a per-image report: no column(s) {', '.join(missing)} "
                        f"(header: {','.join(reader.fieldnames or []) or 'empty'})")
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


def paired_bootstrap(diff: np.ndarray, resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, p): percentile interval of the mean of `diff` over images resampled with replacement,
    and a two-sided p-value for "the mean difference is 0" (twice the smaller tail beyond 0, at most 1;
    with all differences exactly 0 it is 1)."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError("paired_bootstrap needs a non-empty 1-D array of differences")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // diff.size)  # bounded memory for big sets
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        idx = rng.integers(0, diff.size, size=(n, diff.size))
        means[start:start + n] = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    if not np.any(diff):
        return 0.0, 0.0, 1.0
    p = 2.0 * min(np.mean(means <= 0.0), np.mean(means >= 0.0))
    return float(low), float(high), float(min(1.0, p))


def compare_reports(a: str | Path | PerImage, b: str | Path | PerImage, resamples: int = 10_000,
                    seed: int = 0, tie: float = 0.005, top: int = 5) -> dict[str, Any]:
    """Paired comparison of two per-image reports (module docstring). Differences are B - A; `tie`:
    |change| at most this counts as unchanged (in the metric's unit; BER: tie x 100). Legacy NaN
    values drop that image from that metric only."""
    ra = a if isinstance(a, PerImage) else read_per_image(a)
    rb = b if isinstance(b, PerImage) else read_per_image(b)
    common = [n for n in ra.rows if n in rb.rows]
    if not common:
        raise DataError(f"{ra.path} and {rb.path} share no image names: were they made on the same images?")
    out: dict[str, Any] = {
        "a": str(ra.path), "b": str(rb.path), "n_a": len(ra.rows), "n_b": len(rb.rows),
        "n_common": len(common), "only_in_a": [n for n in ra.rows if n not in rb.rows],
        "only_in_b": [n for n in rb.rows if n not in ra.rows], "resamples": resamples, "seed": seed,
        "tie": tie, "metrics": {},
    }
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
        movers = [{"name": names[i], "a": float(va[i]), "b": float(vb[i]), "change": float(diff[i])}
                  for i in (list(order[:top]) + list(order[::-1][:top])) if diff[i] != 0.0]
        out["metrics"][m] = {
            "n": int(va.size), "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
            "diff": float(diff.mean()), "ci95": [low, high], "p": p, "higher_is_better": higher,
            "b_better": int(np.sum(gain > t)), "b_worse": int(np.sum(gain < -t)),
            "unchanged": int(np.sum(np.abs(gain) <= t)),
            "largest_changes": sorted({d["name"]: d for d in movers}.values(), key=lambda d: d["change"]),
        }
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
    lines = [f"A: {result['a']} ({result['n_a']} images)", f"B: {result['b']} ({result['n_b']} images)",
             f"{result['n_common']} images in both"
             + (f"; {len(result['only_in_a'])} only in A, {len(result['only_in_b'])} only in B"
                if result["only_in_a"] or result["only_in_b"] else ""), ""]
    header = ("metric", "A", "B", "B - A", "95% CI (paired bootstrap)", "B better/worse/same")
    rows = []
    for m, r in result["metrics"].items():
        digits = 2 if m == "ber" else 4
        low, high = r["ci95"]
        rows.append((LABELS[m], f"{r['mean_a']:.{digits}f}", f"{r['mean_b']:.{digits}f}",
                     f"{r['diff']:+.{digits}f}", f"[{low:+.{digits}f}, {high:+.{digits}f}]",
                     f"{r['b_better']}/{r['b_worse']}/{r['unchanged']}"))
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    lines.append("  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip())
    lines.extend("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows)
    lines.append(f"(B - A per image, mean over images; {result['resamples']} resamples, seed {result['seed']}; "
                 f"same = within {result['tie']:g}, BER within {result['tie'] * 100:g})")
    lines.append("")
    lines.extend(verdict(m, r) for m, r in result["metrics"].items())
    iou = result["metrics"].get("iou")
    if iou and iou["largest_changes"]:
        lines.append("")
        lines.append("largest IoU changes (A -> B):")
        lines.extend(f"  {d['name']}: {d['a']:.3f} -> {d['b']:.3f} ({d['change']:+.3f})"
                     for d in iou["largest_changes"])
    return "\n".join(lines)


def short_label(path: str | Path) -> str:
    """A report's name for a plot: its folder's last two parts (per_image.csv dropped)."""
    p = Path(path)
    if p.name == REPORT_CSV:
        p = p.parent
    return "/".join(p.parts[-2:])


def plot_comparison(a: PerImage, b: PerImage, path: str | Path, labels: Optional[Sequence[str]] = None,
                    metric: str = "iou", tie: float = 0.005) -> Path:
    """Per-image `metric` of B against A (one dot per image in both, the diagonal = no change), coloured
    as `compare_reports` counts them: better, worse, or within `tie`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io import atomic_write_bytes

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
    for sel, color, what in ((gain > t, "tab:green", "B better"), (gain < -t, "tab:red", "B worse"),
                             (np.abs(gain) <= t, "0.45", f"same (within {t:g})")):
        ax.scatter(va[sel], vb[sel], s=16, color=color, label=f"{what} ({int(sel.sum())})")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{LABELS[metric]} per image, A: {la}", fontsize=8)
    ax.set_ylabel(f"{LABELS[metric]} per image, B: {lb}", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{len(names)} images: mean {LABELS[metric]} {np.nanmean(va):.4f} (A) vs "
                 f"{np.nanmean(vb):.4f} (B)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return atomic_write_bytes(path, buf.getvalue())


def run_compare(a: str | Path, b: str | Path, resamples: int = 10_000, seed: int = 0, tie: float = 0.005,
                plot: Optional[str | Path] = None) -> tuple[dict[str, Any], str]:
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
