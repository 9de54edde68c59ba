"""An experiment's results: OUT/results.csv (one row per run and paradigm), results.md (the paper's table
layout, the paper's IoU beside ours, what the data really were) and results.png (IoU against scale, or per run)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .datasets import REAL, ExperimentData
from .plan import PARADIGMS, Budget, Plan

FIELDS = (
    "plan",
    "budget",
    "run",
    "label",
    "scale",
    "paradigm",
    "pretrain",
    "finetune",
    "iou",
    "fbeta",
    "mae",
    "ber",
    "n_images",
    "false_glass",
    "clean",
    "n_glass_free",
    "paper_iou",
    "status",
)
# false_glass: mean fraction of the data.glass_free photos predicted as glass; clean: those under 1%
# (report.false_glass_summary); empty without data.glass_free


def collect_rows(plan: Plan, budget: Budget, out: Path, skipped: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for run in plan.runs:
        for paradigm in run.paradigms():
            row: dict[str, Any] = {
                "plan": plan.name,
                "budget": budget.name,
                "run": run.name,
                "label": run.label,
                "scale": run.scale if run.pretrain else "",
                "paradigm": paradigm,
                "pretrain": run.pretrain,
                "finetune": run.finetune,
                "paper_iou": run.paper.get(paradigm.replace("-", "_"), ""),
            }
            path = out / "runs" / run.name / f"{paradigm}.json"
            if run.name in skipped:
                row["status"] = f"skipped: {skipped[run.name]}"
            elif path.is_file():
                m = json.loads(path.read_text())
                row.update(
                    {
                        k: m.get(k, "")
                        for k in ("iou", "fbeta", "mae", "ber", "n_images", "false_glass", "clean", "n_glass_free")
                    },
                    status="done",
                )
            else:
                row["status"] = "not run yet"
            rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and k not in ("scale",) else v) for k, v in r.items()})
    return buf.getvalue()


def _num(v: Any, digits: int = 3) -> str:
    if v == "" or v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{float(v):.{digits}f}".lstrip("0") if float(v) < 1 else f"{float(v):.{digits - 1}f}"


def _stand_in_notes(data: ExperimentData) -> list[str]:
    notes = []
    synth = [k for k in data.standins if k not in (REAL, "eval")]
    if synth:
        notes.append(
            f"**The pretraining set{'s' if len(synth) > 1 else ''} ({', '.join(synth)}) here "
            f"{'are' if len(synth) > 1 else 'is'} the procedural stand-in** (`glassgem synth procedural`: "
            "glass panes composited onto photos), not the paper's Stable Diffusion + ControlNet S-GSD: "
            "no Stable Diffusion weights were given. It tests the pipeline and the trend, not S-GSD."
        )
    if REAL in data.standins:
        notes.append(
            "**The real set is a procedural stand-in** (no `data.real` given): fine-tuning is on generated scenes."
        )
    if "eval" in data.standins:
        notes.append(
            "**The eval set is procedural scenes**, not a real test set: these numbers say nothing about real glass."
        )
    return notes


def render_markdown(plan: Plan, budget: Budget, data: ExperimentData, rows: list[dict[str, Any]]) -> str:
    paradigms = [p for p in PARADIGMS if any(r["paradigm"] == p for r in rows)]
    by = {(r["run"], r["paradigm"]): r for r in rows}
    lines = [f"# {plan.title}", "", f"Plan `{plan.name}`, budget `{budget.name}`: {budget.about}.", ""]
    lines += [f"- {n}" for n in _stand_in_notes(data)]
    lines += [
        f"- Data: {'; '.join(f'{k}: {v}' for k, v in data.described.items())}.",
        f"- Scored on: {data.eval_name} (IoU, GSD-S protocol).",
        f"- Paper column: {plan.source or 'no paper numbers'}; — where the paper's value is not in our notes.",
    ]
    if data.glass_free_name:
        lines.append(
            f"- False glass: on {data.glass_free_name}: the mean fraction of each photo's pixels "
            "predicted as glass, and how many photos stay under 1% (clean)."
        )
    lines += [f"- {n}" for n in plan.notes]
    head = ["run"] + (["scale"] if plan.layout == "scale" else [])
    for p in paradigms:
        head += [f"{p} IoU (ours)", f"{p} IoU (paper)"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in plan.runs:
        cells = [run.label] + ([f"{run.scale:g}×"] if plan.layout == "scale" else [])
        for p in paradigms:
            r = by.get((run.name, p))
            if r is None:
                cells += ["", ""]
            else:
                ours = _num(r.get("iou", "")) if r["status"] == "done" else r["status"].split(":")[0]
                cells += [ours, _num(r["paper_iou"])]
        lines.append("| " + " | ".join(cells) + " |")
    fg = bool(data.glass_free_name)
    lines += [
        "",
        "All metrics (ours):",
        "",
        "| run | paradigm | IoU | F-beta | MAE | BER | images | "
        + ("false glass | clean | " if fg else "")
        + "status |",
        "|---|---|---|---|---|---|---|" + "---|" * fg * 2 + "---|",
    ]
    for r in rows:
        clean = f"{r['clean']}/{r['n_glass_free']}" if r.get("n_glass_free", "") != "" else "—"
        lines.append(
            f"| {r['label']} | {r['paradigm']} | {_num(r.get('iou'))} | {_num(r.get('fbeta'))} | "
            f"{_num(r.get('mae'))} | {_num(r.get('ber'), 2)} | {r.get('n_images', '')} | "
            + (f"{_num(r.get('false_glass'))} | {clean} | " if fg else "")
            + f"{r['status']} |"
        )
    return "\n".join(lines) + "\n"


def plot(plan: Plan, rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"zero-shot": "tab:blue", "fine-tuned": "tab:orange", "trained": "tab:green"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    done = [r for r in rows if r["status"] == "done"]
    if plan.layout == "scale":
        for p in PARADIGMS:
            ours = sorted((float(r["scale"]), float(r["iou"])) for r in done if r["paradigm"] == p)
            paper = sorted(
                (float(r["scale"]), float(r["paper_iou"]))
                for r in rows
                if r["paradigm"] == p and r["paper_iou"] != "" and r["scale"] != ""
            )
            if ours:
                ax.plot(*zip(*ours), "o-", color=colors[p], label=f"{p} (ours)")
            if paper:
                ax.plot(*zip(*paper), "s--", color=colors[p], mfc="none", alpha=0.8, label=f"{p} (paper)")
        scales = sorted({float(r["scale"]) for r in rows if r["scale"] != ""})
        ax.set_xscale("log")
        ax.set_xticks(scales, [f"{s:g}×" for s in scales])
        ax.minorticks_off()
        ax.set_xlabel("pretraining set size (× real training set)")
    else:
        labels = [r.label for r in plan.runs]
        paradigms = [p for p in PARADIGMS if any(r["paradigm"] == p for r in rows)]
        width = 0.8 / max(1, len(paradigms))
        for j, p in enumerate(paradigms):
            for i, run in enumerate(plan.runs):
                x = i + (j - (len(paradigms) - 1) / 2) * width
                r = next((r for r in rows if r["run"] == run.name and r["paradigm"] == p), None)
                if r is None:
                    continue
                if r["status"] == "done":
                    ax.bar(x, float(r["iou"]), width * 0.9, color=colors[p], label=f"{p} (ours)" if i == 0 else None)
                else:
                    ax.text(x, 0.02, r["status"].split(":")[0], rotation=90, ha="center", va="bottom", fontsize=8)
                if r["paper_iou"] != "":
                    ax.plot(x, float(r["paper_iou"]), "k_", ms=14, mew=2, label="paper" if (i, j) == (0, 0) else None)
        ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right")
        ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(-0.02, 1.02)  # IoU is 0..1; a point at 0 stays visible
    ax.set_ylabel("IoU on the eval set")
    ax.set_title(plan.title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_results(plan: Plan, budget: Budget, data: ExperimentData, out: Path, skipped: dict[str, str]) -> list[Path]:
    rows = collect_rows(plan, budget, out, skipped)
    csv_path = atomic_write_text(out / "results.csv", _csv(rows))
    md_path = atomic_write_text(out / "results.md", render_markdown(plan, budget, data, rows))
    return [Path(csv_path), Path(md_path), plot(plan, rows, out / "results.png")]


__all__ = ["FIELDS", "collect_rows", "plot", "render_markdown", "write_results"]
