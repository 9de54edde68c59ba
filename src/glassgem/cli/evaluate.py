"""`glassgem evaluate`: a model on a dataset with the GSD-S metrics."""

from __future__ import annotations

import argparse

from ..errors import GlassgemError
from ..inference.quantize import PREDICT_PRECISIONS
from .common import (
    _add_data_args,
    _add_mask_args,
    _add_report_args,
    _check_mask_args,
    _finish_report,
    _make_report,
    _pair_folders,
    _refuse_writing_inputs,
    _spec,
    _test_size,
)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on a dataset with the GSD-S metrics",
        description="Squash each image to --size, predict, resize the scores back to the "
        "original size and score IoU / max F-beta / MAE / BER (also the zero-shot protocol).",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
        "hf://owner/name/file; default: the shipped model)",
    )
    _add_data_args(p, "--data", "evaluation")
    p.add_argument("--size", type=_test_size, default=None, help="square test size (default: the model's, 384)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PREDICT_PRECISIONS,
        help="fp32 (default: the model's own numbers), int8 (the weights as an int8 onnxruntime graph, as "
        "glassgem predict runs the shipped GEM-S on a CPU) or auto (what glassgem predict would run)",
    )
    p.add_argument("--save-masks", default=None, metavar="DIR", help="write <stem>.png masks (0/255) here")
    p.add_argument("--save-prob", action="store_true", help="with --save-masks, also write glass probability maps")
    p.add_argument("--legacy", action="store_true", help="original NaN behaviour for images without glass")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: also score the mirrored images and average (2x the time; "
        "not the paper's protocol)",
    )
    _add_mask_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    _add_report_args(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_model
    from ..inference.predictor import Predictor
    from ..train.runner import load_pairs

    if args.data is None:
        raise GlassgemError("--data is required")
    _check_mask_args(args)
    report = _make_report(args)
    outputs = {"--save-masks": args.save_masks, "--json": args.json, "--report": args.report}
    _refuse_writing_inputs(outputs, [args.weights], roots=[args.data])  # (a Hub id is no local path: skipped)
    pairs = load_pairs(_spec(args, "data"))
    _refuse_writing_inputs(outputs, _pair_folders(pairs))  # the folders of its images and masks
    predictor = Predictor(
        args.weights,
        size=args.size,
        tta=args.tta,
        threshold=args.threshold,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        smoothing=args.smoothing,
        precision=args.precision,
    )
    size = predictor.size
    results = evaluate_model(
        predictor, pairs, save_masks=args.save_masks, save_prob=args.save_prob, legacy=args.legacy, report=report
    )
    if args.threshold is not None:
        print(f"masks: glass probability > {args.threshold:g} (not the protocol's argmax)")
    if results.get("score_smoothing"):
        from ..model.postprocess import smoothing_radius

        r = smoothing_radius(results["score_smoothing"], (size, size))
        print(
            f"scores box-smoothed over {2 * r + 1}x{2 * r + 1} px at {size}x{size} (score_smoothing "
            f"{results['score_smoothing']:g}; --smoothing 0 for the raw scores)"
        )
    _finish_report(args, report, results)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `evaluate` to the `glassgem` subcommands."""
    _add_evaluate(sub)
