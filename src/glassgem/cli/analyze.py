"""`glassgem analyze tsne`: t-SNE of encoder or CLIP features."""

from __future__ import annotations

import argparse

from ..errors import GlassgemError
from .common import _add_group, _refuse_writing_inputs


# `glassgem analyze <what>`: analyses of data sets; each adds a nested subcommand here.
def _add_analyze(sub: argparse._SubParsersAction) -> None:
    _add_group(sub, "analyze", "analyses of image sets (t-SNE of real vs synthetic features)", (_add_analyze_tsne,))


def _add_analyze_tsne(analyze_sub: argparse._SubParsersAction) -> None:
    p = analyze_sub.add_parser(
        "tsne",
        help="t-SNE of image features of several sets in one scatter plot (+ CSV of the coordinates)",
        description="Extract one feature vector per image (GEM encoder: global average of the stride-16 map; "
        "or CLIP image embeddings), embed them with t-SNE and plot one colour per set. The 2-D "
        "coordinates go to the plot's name with .csv (set, image, x, y).",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="NAME=DIR",
        help="image sets: a dataset root (any known layout, every split) or a plain folder of images",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="plot to write (.png, .jpg, .pdf, .svg)")
    p.add_argument(
        "--features",
        default="encoder",
        choices=("encoder", "clip"),
        help="encoder: GEM encoder, global average pool (default); clip: CLIP image embeddings",
    )
    p.add_argument("--weights", default=None, help="GEM weights for encoder features (default: the shipped model)")
    p.add_argument(
        "--clip-model",
        default=None,
        metavar="PATH_OR_ID",
        help="CLIP folder or hub id for --features clip (a hub id needs network or a filled cache)",
    )
    p.add_argument(
        "--max-per-set",
        type=int,
        default=200,
        metavar="N",
        help="sample at most N images per set, the same ones for the same --seed (default 200)",
    )
    p.add_argument(
        "--perplexity",
        type=float,
        default=30.0,
        help="t-SNE perplexity, lowered to (n-1)/3 for small sets (default 30)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and of t-SNE (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per feature batch (default 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=_run_analyze_tsne)


def _run_analyze_tsne(args: argparse.Namespace) -> int:
    from ..inference.runtime import resolve_device
    from ..inference.scorers import load_model_for_inference
    from ..viz.tsne import load_sets, tsne_figure

    sets = load_sets(args.data, args.max_per_set, args.seed)  # fail on bad sets before loading a model
    _refuse_writing_inputs({"--out": args.out}, [s.root for s in sets], files=("--out",))
    model, device = None, resolve_device(args.device)
    if args.features == "encoder":
        model, device, _ = load_model_for_inference(args.weights, args.device)
    elif args.clip_model is None:
        raise GlassgemError("--features clip needs --clip-model (a local CLIP folder or a hub id)")
    s = tsne_figure(
        args.data,
        args.out,
        features=args.features,
        model=model,
        clip_model=args.clip_model,
        max_per_set=args.max_per_set,
        perplexity=args.perplexity,
        seed=args.seed,
        batch_size=args.batch_size,
        device=device,
    )
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    print(f"t-SNE of {args.features} features ({counts}; perplexity {s['perplexity']:.3g}) -> {s['plot']}, {s['csv']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `analyze` to the `glassgem` subcommands."""
    _add_analyze(sub)
