"""`glassgem compare`: two models' per-image reports, paired bootstrap."""

from __future__ import annotations

import argparse
import json

from .common import _refuse_writing_inputs


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
    p.add_argument(
        "--tie",
        type=float,
        default=0.005,
        help="a per-image change at most this large counts as unchanged (default 0.005; BER x100)",
    )
    p.add_argument("--plot", default=None, metavar="FILE", help="also draw B's per-image IoU against A's (.png)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import run_compare
    from ..io import atomic_write_text

    _refuse_writing_inputs({"--json": args.json, "--plot": args.plot}, [args.a, args.b], files=("--json", "--plot"))
    result, text = run_compare(args.a, args.b, resamples=args.resamples, seed=args.seed, tie=args.tie, plot=args.plot)
    print(text)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `compare` to the `glassgem` subcommands."""
    _add_compare(sub)
