"""`glassgem predict`: glass masks (and overlays, probability maps) for photos and videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GlassgemError
from ..inference.quantize import PREDICT_PRECISIONS
from .common import _add_mask_args, _check_mask_args, _test_size


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="write glass masks (and optional overlays, probability maps) for photos",
        description="Segment glass in image files, folders and glob patterns (quote them to let glassgem "
        "expand them, ** included). Each photo is squashed to --size, scored, and the scores are resized "
        "back: OUT/<stem>.png is a 0/255 mask at the photo's own size. Unreadable photos are reported and "
        "skipped (exit code 1 if any); photos sharing a stem get _2, _3, ... (reported).",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image or video files, folders or glob patterns; or one ROS bag, or one live stream",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--weights",
        default=None,
        help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
        "hf://owner/name/file; default: the shipped model)",
    )
    p.add_argument(
        "--size", type=_test_size, default=None, help="square test size, a multiple of 32 (default: the model's, 384)"
    )
    p.add_argument("--batch-size", type=int, default=4, help="photos per forward pass (default 4)")
    p.add_argument("--recursive", action="store_true", help="also read the subfolders of folder inputs")
    p.add_argument("--save-prob", action="store_true", help="also write <stem>_prob.png (glass probability x 255)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg (glass tinted red)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument(
        "--onnx",
        default=None,
        metavar="FILE",
        help="score with a graph from `glassgem export onnx` (onnxruntime) instead of PyTorch weights",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PREDICT_PRECISIONS,
        help="int8: the weights run as an int8 onnxruntime graph on the CPU, made once (about 35 s for GEM-S) "
        "and then read from the user cache (with --onnx: the file is quantized at load); fp32: PyTorch (or the "
        "--onnx file as it is); auto (default): int8 for the shipped GEM-S on a CPU (masks within 0.005 IoU "
        "of fp32's and faster, docs/speed.md), fp32 otherwise",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: also score the mirrored photo and average (2x the time)",
    )
    _add_mask_args(p)
    v = p.add_argument_group(
        "videos",
        "video files (.mp4, .mov, .avi, .mkv, .webm, ...; needs "
        'the video extra: `pip install -e ".[video]"`) get OUT/<stem>/<frame>.png masks, '
        "OUT/<stem>/frames.csv (frame, time, glass fraction) and, with --overlay, "
        "OUT/<stem>_overlay.mp4. Live streams (one INPUT: /dev/video0, rtsp://, http(s):// "
        "..., or file:clip.mp4 to play a file as a camera) get OUT/<name>/<frame>.png masks of "
        "the newest frames, dropping those that arrive while the network is busy",
    )
    v.add_argument("--every", type=int, default=1, metavar="N", help="score every N-th frame (default 1: all)")
    v.add_argument("--max-frames", type=int, default=None, metavar="M", help="stop after M scored frames")
    v.add_argument(
        "--resume",
        action="store_true",
        help="keep what an interrupted run already wrote (photos whose outputs are there and "
        "decode, a video's or bag's frame masks) and score only the rest",
    )
    r = p.add_argument_group(
        "ROS bags",
        "a rosbag2 folder or a .mcap/.db3/.bag file as the only INPUT (needs the "
        'ros extra: `pip install -e ".[ros]"`): --out is the output bag (rosbag2, MCAP) with '
        "/glassgem/mask (sensor_msgs/Image mono8, each frame's header) and, with --overlay, "
        "/glassgem/overlay (rgb8); --every, --max-frames and --resume work as for videos "
        "(docs/ros2.md)",
    )
    r.add_argument(
        "--topic",
        default=None,
        help="the image topic (sensor_msgs/Image or CompressedImage; default: the bag's only one)",
    )
    r.add_argument(
        "--copy-topics",
        default=None,
        metavar="TOPICS",
        help="also copy these topics into the output bag: comma-separated names, or 'all'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _predictor(args: argparse.Namespace):
    """The glassgem.Predictor the options ask for: PyTorch weights or an ONNX graph, --size, --tta, --threshold,
    --batch-size, --device, --dtype, --smoothing. The PyTorch model code is imported only for PyTorch weights
    (timm and torchvision take seconds)."""
    if args.onnx:
        if args.weights or args.dtype != "fp32" or args.smoothing is not None:
            raise GlassgemError(
                "--onnx runs an exported graph (its smoothing included): leave out --weights, --dtype and --smoothing"
            )
        from ..inference.onnx_runner import load_onnx_scorer

        precision = "fp32" if args.precision == "auto" else args.precision  # auto: the file as it is
        model = load_onnx_scorer(
            args.onnx, device=args.device or "auto", precision=precision, spinning=False
        )  # idle onnxruntime threads sleep, as the PyTorch path's OpenMP threads (threads.py)
    else:
        model = args.weights
    from ..inference.predictor import Predictor

    return Predictor(
        model,
        size=args.size,
        tta=args.tta,
        threshold=args.threshold,
        device=None if args.onnx else args.device,
        dtype=None if args.onnx else args.dtype,
        batch_size=args.batch_size,
        smoothing=None if args.onnx else args.smoothing,
        precision="auto" if args.onnx else args.precision,
    )


def _run_predict(args: argparse.Namespace) -> int:
    from ..inference.files import collect_inputs
    from ..inference.predict import plan_files, run_files
    from ..inference.stream import is_stream
    from ..ros2.bag_input import is_bag

    _check_mask_args(args)
    if any(is_stream(i) for i in args.inputs):
        return _run_predict_stream(args)
    if any(is_bag(i) for i in args.inputs):
        return _run_predict_bag(args)
    if args.topic or args.copy_topics:
        raise GlassgemError(
            "--topic and --copy-topics are for ROS bags (a rosbag2 folder or a .mcap, .db3 or .bag "
            "file as the only input)"
        )
    photos = collect_inputs(args.inputs, recursive=args.recursive, out=args.out)  # before loading a model
    run = plan_files(photos, args.out, args.save_prob, args.overlay, args.every, args.max_frames, args.resume)
    summary = run_files(run, _predictor(args), progress=not args.quiet)
    print(summary.line())
    return 1 if summary.failed else 0


def _run_predict_stream(args: argparse.Namespace) -> int:
    from ..inference.stream import predict_stream, stream_name
    from ..inference.video import check_frame_options, require_av

    if len(args.inputs) > 1:
        raise GlassgemError(
            f"{', '.join(args.inputs)}: a live stream is predicted on its own (one stream, no other inputs)"
        )
    if args.resume or args.topic or args.copy_topics:
        raise GlassgemError("--resume, --topic and --copy-topics do not apply to a live stream")
    check_frame_options(args.every, args.max_frames)
    require_av()
    source = args.inputs[0]
    summary = predict_stream(
        source,
        stream_name(source),
        Path(args.out),
        _predictor(args),
        save_prob=args.save_prob,
        overlay=args.overlay,
        every=args.every,
        max_frames=args.max_frames,
        progress=not args.quiet,
    )
    print(summary.line())
    return 1 if summary.error and summary.error != "interrupted" else 0


def _run_predict_bag(args: argparse.Namespace) -> int:
    from ..inference.video import check_frame_options
    from ..ros2.bag_input import BagInput, require_rosbags
    from ..ros2.bag_predict import check_paths, predict_bag

    if len(args.inputs) > 1:
        raise GlassgemError(
            f"{', '.join(args.inputs)}: a ROS bag is predicted on its own (one bag, no other "
            "inputs), its masks go into the output bag --out"
        )
    if args.save_prob:
        raise GlassgemError("--save-prob writes image files; a bag's output is a bag: leave it out")
    check_frame_options(args.every, args.max_frames)
    require_rosbags()
    copy = [t.strip() for t in (args.copy_topics or "").split(",") if t.strip()]
    check_paths(Path(args.inputs[0]), Path(args.out), args.resume)  # a bad bag, topic or --out fails before
    source = BagInput(args.inputs[0], args.topic, copy)  # a model loads
    try:
        source.check_encoding()
    finally:
        source.close()
    summary = predict_bag(
        args.inputs[0],
        args.out,
        _predictor(args),
        overlay=args.overlay,
        topic=args.topic,
        every=args.every,
        max_frames=args.max_frames,
        copy_topics=copy,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(summary.line())
    return 1 if summary.skipped else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `predict` to the `glassgem` subcommands."""
    _add_predict(sub)
