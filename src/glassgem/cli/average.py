"""`glassgem average`: the element-wise mean of checkpoints of one model."""

from __future__ import annotations

import argparse

from .common import _refuse_writing_inputs


def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one model into a glassgem directory",
        description="Element-wise mean of the weights of glassgem directories, original GEM checkpoints or "
        "training checkpoints (RUN/checkpoints/step_N.pt) of the same model (a 'model soup', e.g. the last "
        "checkpoints of a run). BatchNorm running statistics are averaged too (an approximation). With one "
        "source it exports a training checkpoint as a glassgem directory.",
    )
    p.add_argument("sources", nargs="+", help="checkpoints to average (same config, same tensors)")
    p.add_argument("--out", required=True, help="output directory (config.json + model.safetensors + average.json)")
    p.set_defaults(func=_run_average)


def _run_average(args: argparse.Namespace) -> int:
    from ..train.average import average_checkpoints

    _refuse_writing_inputs({"--out": args.out}, args.sources)
    out = average_checkpoints(args.sources, args.out)
    print(f"averaged {len(args.sources)} checkpoint(s) -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `average` to the `glassgem` subcommands."""
    _add_average(sub)
