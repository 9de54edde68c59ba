"""`glassgem demo`: the built-in default end to end (what `make demo` runs)."""

from __future__ import annotations

import argparse


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in default end to end (what `make demo` runs)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--weights", default=None, help="model to run (default: the shipped default, GEM-S)")
    p.add_argument(
        "--also",
        action="append",
        default=None,
        metavar="WEIGHTS",
        help="score the glass-free photos with this model too (repeatable; default without "
        "--weights: the other shipped models, the fast gem-lite and gem-lite-gf)",
    )
    p.add_argument(
        "--real-scenes",
        default=None,
        metavar="DIR",
        help="score the real-scene dev set in DIR/dev first, rebuilding it there from --scenes-from when "
        "missing (make demo: real_scenes)",
    )
    p.add_argument(
        "--scenes-from",
        default="https://github.com",
        metavar="DIR_OR_URL",
        help="where the real-scene photos come from (as `glassgem data real-scenes --from`)",
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..hub.pretrained import shipped_models

    also = args.also
    if also is None:
        also = [m for m in ("gem-lite", "gem-lite-gf") if m in shipped_models()] if args.weights is None else []
    return run_demo(args.out, weights=args.weights, also=also, scenes=args.real_scenes, scenes_from=args.scenes_from)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the `glassgem` subcommands."""
    _add_demo(sub)
