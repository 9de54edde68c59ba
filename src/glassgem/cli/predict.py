"""`glassgem predict`: glass masks (and overlays, probability maps) for photos and videos."""
from __future__ import annotations

import argparse

from ..errors import GlassgemError
from .common import _add_mask_args, _check_mask_args, _test_size


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
                             "the video extra: `pip install -e \".[video]\"`) get OUT/<stem>/<frame>.png masks, "
                             "OUT/<stem>/frames.csv (frame, time, glass fraction) and, with --overlay, "
                             "OUT/<stem>_overlay.mp4")
    v.add_argument("--every", type=int, default=1, metavar="N", help="score every N-th frame (default 1: all)")
    v.add_argument("--max-frames", type=int, default=None, metavar="M", help="stop after M scored frames")
    v.add_argument("--resume", action="store_true",
                   help="keep what an interrupted run already wrote (photos whose outputs are there and "
                   "decode, a video's frame masks) and score only the rest")
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
    """Add `predict` to the `glassgem` subcommands."""
    _add_predict(sub)
