"""`glassgem convert`: an original GEM checkpoint -> a glassgem directory."""

from __future__ import annotations

import argparse

from .common import _refuse_writing_inputs


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert an original GEM checkpoint (model_final.pth/.pkl) to a glassgem directory"
    )
    p.add_argument("src", help="original checkpoint ({'model': state_dict} with detectron2/MaskDINO key names)")
    p.add_argument("dst", help="output directory (config.json + model.safetensors)")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from ..hub.pretrained import convert

    _refuse_writing_inputs({"DST": args.dst}, [args.src])
    summary = convert(args.src, args.dst)
    print(
        f"converted {args.src} ({summary['encoder']}, {summary['tensors']} tensors, "
        f"{summary['parameters'] / 1e6:.1f} M parameters) -> {args.dst}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `convert` to the `glassgem` subcommands."""
    _add_convert(sub)
