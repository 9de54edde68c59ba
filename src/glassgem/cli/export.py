"""`glassgem export onnx`: an ONNX graph of a model."""

from __future__ import annotations

import argparse

from ..inference.quantize import PRECISIONS
from .common import _add_group, _refuse_writing_inputs


# `glassgem export <format>`: deployable graphs of a model; each format adds a nested subcommand here.
def _add_export(sub: argparse._SubParsersAction) -> None:
    _add_group(sub, "export", "export a model for deployment (ONNX)", (_add_export_onnx,), metavar="FORMAT")


def _add_export_onnx(export_sub: argparse._SubParsersAction) -> None:
    p = export_sub.add_parser(
        "onnx",
        help="the whole network with semantic inference as one ONNX graph (images -> scores)",
        description="Write an ONNX graph: input 'images' float32 [B,3,H,W] RGB 0..255 (not normalised), output "
        "'scores' float32 [B,2,H,W] (background, glass; argmax = glass map), the same numbers as "
        "GEM.semantic_scores. The file is then run with onnxruntime on a random input and compared with "
        "PyTorch; if they differ by more than --tolerance it is not written to --out (exit code 2).",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
        "hf://owner/name/file; default: the shipped model)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output .onnx file (written atomically)")
    p.add_argument(
        "--size",
        default=None,
        metavar="N|HxW",
        help="input size: N (square) or HxW (height x width), multiples of 32 (default: the model's, 384)",
    )
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 or newer (default 18)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest accepted abs difference of the scores, onnxruntime vs PyTorch (default 1e-3)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="int8: the checked graph's linear layers quantized (onnxruntime dynamic quantization; "
        "`glassgem predict --onnx FILE` runs it as it is); default fp32",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument(
        "--no-optimize",
        action="store_true",
        help="skip the slow op-fusion pass (constants are still folded): ~40%% quicker export, "
        "same onnxruntime speed for GEM-Tiny",
    )
    p.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ..hub.pretrained import from_pretrained
    from ..inference.export import export_onnx

    _refuse_writing_inputs({"--out": args.out}, [args.weights], files=("--out",))
    model = from_pretrained(args.weights)
    report = export_onnx(
        model,
        args.out,
        size=args.size,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        verify=not args.no_verify,
        tolerance=args.tolerance,
        optimize=not args.no_optimize,
        precision=args.precision,
    )
    print(report.line())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export` to the `glassgem` subcommands."""
    _add_export(sub)
