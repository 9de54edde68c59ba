"""`glassgem evaluate-masks`: predicted masks against ground truth."""

from __future__ import annotations

import argparse
import sys

from .common import _add_report_args, _cpu_count, _finish_report, _make_report, _refuse_writing_inputs


def _add_evaluate_masks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-masks",
        help="score predicted masks against ground truth (GSD-S IoU, max F-beta, MAE, BER)",
        description="Pair prediction files with ground-truth masks by file stem and print IoU, max "
        "F-beta (beta^2=0.3), MAE and BER exactly as the GSD-S tables compute them. Predictions may be "
        "binary (0/1 or 0/255) or soft (0..255 = value/255; 16-bit = value/65535).",
    )
    p.add_argument("--pred", required=True, help="folder of predicted masks or soft maps")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks (0/1 or 0/255)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON to FILE")
    p.add_argument(
        "--legacy",
        action="store_true",
        help="reproduce the original code exactly: NaN IoU/BER for images without glass etc.",
    )
    p.add_argument(
        "--resize-pred",
        action="store_true",
        help="resize predictions to the ground-truth size (soft maps bilinearly, binary "
        "maps nearest) instead of failing on a size mismatch",
    )
    p.add_argument("--workers", type=_cpu_count(1), default=None, help="file-reading threads (default: auto)")
    _add_report_args(p)
    p.set_defaults(func=_run_evaluate_masks)


def _run_evaluate_masks(args: argparse.Namespace) -> int:
    from ..evaluation.mask_eval import evaluate_pairs, pair_files

    outputs = {"--json": args.json, "--report": args.report}
    _refuse_writing_inputs(outputs, [args.pred, args.gt])
    pairs, extra = pair_files(args.pred, args.gt)
    _refuse_writing_inputs(outputs, {f.parent for pair in pairs for f in pair})
    if extra:
        print(
            f"note: {len(extra)} prediction file(s) in {args.pred} have no ground truth and are ignored "
            f"(e.g. {extra[0].name})",
            file=sys.stderr,
        )
    report = _make_report(args)
    results = evaluate_pairs(
        pairs, legacy=args.legacy, resize_pred=args.resize_pred, workers=args.workers, report=report
    )
    _finish_report(args, report, results)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `evaluate-masks` to the `glassgem` subcommands."""
    _add_evaluate_masks(sub)
