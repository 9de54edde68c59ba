"""Commands that run models and score results: demo, predict, evaluate, evaluate-masks, compare, train."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import TRAIN_PRESETS
from ..errors import ConfigError, GlassgemError
from .common import _test_size


# --------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in default end to end (what `make demo` runs)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--weights", default=None, help="model to run (default: the shipped GEM-Lite)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args.out, weights=args.weights)


# ------------------------------------------------------------------------------ evaluate-masks
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
    p.add_argument("--legacy", action="store_true",
                   help="reproduce the original code exactly: NaN IoU/BER for images without glass etc.")
    p.add_argument("--resize-pred", action="store_true",
                   help="resize predictions to the ground-truth size (soft maps bilinearly, binary "
                        "maps nearest) instead of failing on a size mismatch")
    p.add_argument("--workers", type=int, default=None, help="file-reading threads (default: auto)")
    _add_report_args(p)
    p.set_defaults(func=_run_evaluate_masks)


def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write a per-image report here: per_image.csv (IoU, MAE, BER, glass and predicted "
                   "fractions per image), worst.jpg (the lowest-IoU images with their errors coloured: "
                   "green found, red false, blue missed glass) and metrics.json")
    p.add_argument("--worst", type=int, default=12, metavar="N",
                   help="how many lowest-IoU images worst.jpg shows (default 12; 0: no picture)")


def _make_report(args: argparse.Namespace):
    if args.worst < 0:
        raise ConfigError(f"--worst must be 0 or more, got {args.worst}")
    if args.report is None:
        return None
    from ..evaluation.report import PerImageReport

    return PerImageReport(worst=args.worst)


def _finish_report(args: argparse.Namespace, report, results: dict) -> None:
    if report is not None:
        written = report.write(args.report, results)
        print(f"per-image report: {', '.join(str(p) for p in written)}")


def _run_evaluate_masks(args: argparse.Namespace) -> int:
    from ..evaluation.mask_eval import evaluate_pairs, pair_files
    from ..evaluation.metrics import format_table, write_json

    pairs, extra = pair_files(args.pred, args.gt)
    if extra:
        print(f"note: {len(extra)} prediction file(s) in {args.pred} have no ground truth and are ignored "
              f"(e.g. {extra[0].name})", file=sys.stderr)
    report = _make_report(args)
    results = evaluate_pairs(pairs, legacy=args.legacy, resize_pred=args.resize_pred, workers=args.workers,
                             report=report)
    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    _finish_report(args, report, results)
    return 0


# ------------------------------------------------------------------------------------ compare
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="is model B better than model A? paired bootstrap over two per-image reports",
        description="Pair two per-image reports (`glassgem evaluate ... --report DIR`, or evaluate-masks) by "
        "image name and print, for IoU, MAE and BER: both means, the mean per-image difference B - A with a "
        "95% paired bootstrap confidence interval and p-value, and how many images got better or worse; "
        "max F-beta is recomputed on the same resamples from the per-image curves the reports keep.",
    )
    p.add_argument("a", help="report folder (or its per_image.csv) of model A, the baseline")
    p.add_argument("b", help="report folder (or its per_image.csv) of model B")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--tie", type=float, default=0.005,
                   help="a per-image change at most this large counts as unchanged (default 0.005; BER x100)")
    p.add_argument("--plot", default=None, metavar="FILE", help="also draw B's per-image IoU against A's (.png)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import run_compare
    from ..io import atomic_write_text

    result, text = run_compare(args.a, args.b, resamples=args.resamples, seed=args.seed, tie=args.tie,
                               plot=args.plot)
    print(text)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------- train / evaluate
def _add_data_args(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, metavar="DIR", help=f"{what} dataset folder (any known layout)")
    dest = flag.lstrip("-").replace("-", "_")
    p.add_argument(f"{flag}-split", dest=f"{dest}_split", default=None, help="split name (default: auto)")
    p.add_argument(f"{flag}-layout", dest=f"{dest}_layout", default="auto", help="dataset layout (default: auto)")


def _spec(args: argparse.Namespace, dest: str):
    from ..train.runner import DataSpec

    root = getattr(args, dest)
    if root is None:
        return None
    return DataSpec(root=root, split=getattr(args, f"{dest}_split"), layout=getattr(args, f"{dest}_layout"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GEM model (pretrain or fine-tune)",
                       description="Train GEM with the paper's recipe. Checkpoints are written atomically "
                       "to RUN_DIR/checkpoints; --resume continues exactly where a run stopped.")
    p.add_argument("--preset", default="gem-tiny", help=f"training preset: {', '.join(TRAIN_PRESETS)}")
    _add_data_args(p, "--data", "training")
    _add_data_args(p, "--val", "validation")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold out this fraction of the training images for validation instead of --val")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, best/, final/)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. max_iter=2000 lr=1e-4 model.dec_layers=6")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from these weights (glassgem dir or original checkpoint): pretrain -> fine-tune")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in RUN_DIR")
    p.add_argument("--allow-test-selection", action="store_true",
                   help="allow --val to be a test split (the original GEM selected on test; not recommended)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in this invocation (resume later with --resume)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ..config import apply_overrides, check_train_config, train_preset
    from ..train.runner import run_training

    if args.data is None:
        raise GlassgemError("--data is required")
    saved = Path(args.out) / "config.json"
    if not args.resume:
        _refuse_existing_run(Path(args.out))
    if args.resume and saved.is_file():
        # The run's own settings, not the preset's: only what --set names changes (new schedule, say).
        cfg = apply_overrides(_saved_config(saved), args.set)
        print(f"resuming with the settings in {saved}" + (f" plus {' '.join(args.set)}" if args.set else ""))
    else:
        cfg = apply_overrides(train_preset(args.preset), args.set)
    if args.init_from:
        cfg.init_from = args.init_from
    check_train_config(cfg)
    result = run_training(cfg, _spec(args, "data"), args.out, val=_spec(args, "val"),
                          val_fraction=args.val_fraction, resume=args.resume,
                          allow_test_selection=args.allow_test_selection, stop_after=args.max_steps)
    best = f"; best validation IoU {result['best_iou']:.4f}" if result["best_iou"] >= 0 else ""
    print(f"stopped at step {result['step']}/{result['max_iter']}{best}; run folder {args.out}")
    return 0


def _refuse_existing_run(out: Path) -> None:
    """A new run never goes into the folder of another one (their checkpoints, logs, best/ and final/ would
    mix, and keep-last pruning would delete the new run's checkpoints)."""
    from ..train.checkpoint import list_checkpoints

    # Only what a new run would lose or mix with: a folder of a run killed before its first checkpoint (config,
    # a few log rows, which the new run's log replaces) may be started over.
    found = [name + "/" for name in ("best", "final") if (out / name).exists()]
    if list_checkpoints(out):
        found.insert(0, "checkpoints/")
    if found:
        raise ConfigError(f"--out {out}: already holds a training run ({', '.join(found)}); pass --resume to "
                          "continue it, or choose a new --out")


def _saved_config(path: Path):
    from ..config import TrainConfig

    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError, GlassgemError) as e:
        raise ConfigError(f"{path}: cannot read the run's saved settings to resume ({e})") from None


def _add_mask_args(p: argparse.ArgumentParser) -> None:
    """--threshold and --smoothing: how predict and evaluate turn the model's scores into a mask."""
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="glass where its probability exceeds T, 0 < T < 1 (default: the larger score wins, "
                   "= 0.5, the paper's protocol); lower finds more glass and more false glass")
    p.add_argument("--smoothing", type=float, default=None, metavar="F",
                   help="box-average the glass scores over this fraction of the input side before resizing them "
                   "back (default: the model's; the shipped GEM-Lite: 0.0625 = 24 px at 384; 0 = off, the "
                   "original GEM's raw scores)")


def _check_mask_args(args: argparse.Namespace) -> None:
    """Refuse a bad --threshold or --smoothing before any model is loaded."""
    from ..config import check_smoothing
    from ..inference.protocol import threshold_option

    threshold_option(args.threshold)
    if args.smoothing is not None:
        check_smoothing(args.smoothing)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset with the GSD-S metrics",
                       description="Squash each image to --size, predict, resize the scores back to the "
                       "original size and score IoU / max F-beta / MAE / BER (also the zero-shot protocol).")
    p.add_argument("--weights", default=None,
                   help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
                        "hf://owner/name/file; default: the shipped model)")
    _add_data_args(p, "--data", "evaluation")
    p.add_argument("--size", type=_test_size, default=None, help="square test size (default: the model's, 384)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--save-masks", default=None, metavar="DIR", help="write <stem>.png masks (0/255) here")
    p.add_argument("--save-prob", action="store_true", help="with --save-masks, also write glass probability maps")
    p.add_argument("--legacy", action="store_true", help="original NaN behaviour for images without glass")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also score the mirrored images and average (2x the time; "
                   "not the paper's protocol)")
    _add_mask_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    _add_report_args(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_model
    from ..inference.scorers import load_model_for_inference
    from ..evaluation.metrics import format_table, write_json
    from ..train.runner import load_pairs

    if args.data is None:
        raise GlassgemError("--data is required")
    _check_mask_args(args)
    report = _make_report(args)
    model, device, dtype = load_model_for_inference(args.weights, args.device, args.dtype, args.smoothing)
    pairs = load_pairs(_spec(args, "data"))
    size = args.size if args.size is not None else model.cfg.image_size
    results = evaluate_model(model, pairs, size=size, batch_size=args.batch_size, device=device, dtype=dtype,
                             save_masks=args.save_masks, save_prob=args.save_prob, legacy=args.legacy,
                             tta=args.tta, report=report, threshold=args.threshold)
    if args.threshold is not None:
        print(f"masks: glass probability > {args.threshold:g} (not the protocol's argmax)")
    if results.get("score_smoothing"):
        from ..model.postprocess import smoothing_radius

        r = smoothing_radius(results["score_smoothing"], (size, size))
        print(f"scores box-smoothed over {2 * r + 1}x{2 * r + 1} px at {size}x{size} (score_smoothing "
              f"{results['score_smoothing']:g}; --smoothing 0 for the raw scores)")
    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    _finish_report(args, report, results)
    return 0


# -------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="write glass masks (and optional overlays, probability maps) for photos",
        description="Segment glass in image files, folders and glob patterns (quote them to let glassgem "
        "expand them, ** included). Each photo is squashed to --size, scored, and the scores are resized "
        "back: OUT/<stem>.png is a 0/255 mask at the photo's own size. Unreadable photos are reported and "
        "skipped (exit code 1 if any); photos sharing a stem get _2, _3, ... (reported).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--weights", default=None,
                   help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
                        "hf://owner/name/file; default: the shipped model)")
    p.add_argument("--size", type=_test_size, default=None,
                   help="square test size, a multiple of 32 (default: the model's, 384)")
    p.add_argument("--batch-size", type=int, default=4, help="photos per forward pass (default 4)")
    p.add_argument("--recursive", action="store_true", help="also read the subfolders of folder inputs")
    p.add_argument("--save-prob", action="store_true", help="also write <stem>_prob.png (glass probability x 255)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg (glass tinted red)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument("--onnx", default=None, metavar="FILE",
                   help="score with a graph from `glassgem export onnx` (onnxruntime) instead of PyTorch weights")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also score the mirrored photo and average (2x the time)")
    _add_mask_args(p)
    v = p.add_argument_group("videos", "video files (.mp4, .mov, .avi, .mkv, .webm, ...; needs "
                             "`pip install \"glassgem[video]\"`) get OUT/<stem>/<frame>.png masks, "
                             "OUT/<stem>/frames.csv (frame, time, glass fraction) and, with --overlay, "
                             "OUT/<stem>_overlay.mp4")
    v.add_argument("--every", type=int, default=1, metavar="N", help="score every N-th frame (default 1: all)")
    v.add_argument("--max-frames", type=int, default=None, metavar="M", help="stop after M scored frames")
    v.add_argument("--resume", action="store_true",
                   help="keep the frame masks an interrupted run already wrote and score only the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from ..inference.files import collect_inputs
    from ..inference.predict import check_video_inputs, predict_files
    from ..inference.scorers import build_scorer

    _check_mask_args(args)
    photos = collect_inputs(args.inputs, recursive=args.recursive, out=args.out)  # before loading a model
    check_video_inputs(photos, args.every, args.max_frames)
    if args.onnx:
        if args.weights or args.dtype != "fp32" or args.smoothing is not None:
            raise GlassgemError("--onnx runs an exported fp32 graph (its smoothing included): leave out --weights, "
                                "--dtype and --smoothing")
        from ..inference.onnx_runner import load_onnx_scorer

        scorer = load_onnx_scorer(args.onnx, device=args.device or "auto")
        size = scorer.square_size(args.size)
    else:
        scorer, size = build_scorer(args.weights, args.device, args.dtype, args.smoothing), args.size
    if args.tta:
        from ..inference.scorers import FlipAveraged

        scorer = FlipAveraged(scorer)
    summary = predict_files(photos, args.out, scorer, size=size, batch_size=args.batch_size,
                            save_prob=args.save_prob, overlay=args.overlay, progress=not args.quiet,
                            threshold=args.threshold, every=args.every, max_frames=args.max_frames,
                            resume=args.resume)
    print(summary.line())
    return 1 if summary.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add demo, predict, evaluate, evaluate-masks, compare and train to the `glassgem` subcommands."""
    for add in (_add_demo, _add_predict, _add_evaluate, _add_evaluate_masks, _add_compare, _add_train):
        add(sub)
