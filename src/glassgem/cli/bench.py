"""`glassgem bench`: time a model or preset."""

from __future__ import annotations

import argparse

from ..config import MODEL_PRESETS
from ..errors import GlassgemError
from .common import _cpu_count, _refuse_writing_inputs, _test_size


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="inference latency, FLOPs and efficiency of a GEM model (random input)")
    p.add_argument(
        "--model",
        default=None,
        choices=tuple(MODEL_PRESETS),
        help="time this preset with random weights (default: the shipped model, or --weights)",
    )
    p.add_argument("--weights", default=None, help="checkpoint to load instead of random weights")
    p.add_argument("--size", type=_test_size, default=384, help="square input side, a multiple of 32 (default 384)")
    p.add_argument("--threads", type=_cpu_count(1), default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs after 3 warm-up runs (default 10)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--runtime",
        default="torch",
        choices=("torch", "onnxruntime"),
        help="torch (default) or onnxruntime: export the model to ONNX first (verified), then time "
        "onnxruntime's CPU provider on it (a core dependency)",
    )
    p.add_argument(
        "--onnx",
        default=None,
        metavar="FILE",
        help="time this exported file with onnxruntime (implies --runtime onnxruntime)",
    )
    p.add_argument(
        "--eager",
        action="store_true",
        help="time eager PyTorch, not the TorchScript graph that predict/evaluate run for GEM-Lite",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers to FILE")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ..inference.bench import benchmark, format_report, write_json
    from ..inference.runtime import resolve_device

    if args.model and args.weights:
        raise GlassgemError("bench: give --model (a preset, random weights) or --weights, not both")
    resolve_device(args.device)  # a bad --device: one line, before any model is built
    _refuse_writing_inputs({"--json": args.json}, [args.weights, args.onnx])
    result = benchmark(
        model=args.model,
        weights=args.weights,
        size=args.size,
        threads=args.threads,
        dtype=args.dtype,
        batch=args.batch,
        runs=args.runs,
        device=args.device,
        runtime=args.runtime,
        onnx=args.onnx,
        eager=args.eager,
    )
    print(format_report(result))
    if args.json:
        write_json(result, args.json)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench` to the `glassgem` subcommands."""
    _add_bench(sub)
