"""`glassgem visualize queries`: the paper's Figure 6."""

from __future__ import annotations

import argparse

from .common import _add_group, _refuse_writing_inputs, _test_size


# `glassgem visualize <what>`: inspection figures of a model; each adds a nested subcommand here.
def _add_visualize(sub: argparse._SubParsersAction) -> None:
    _add_group(
        sub,
        "visualize",
        "inspection figures of a model (DQS query positions, reference boxes)",
        (_add_visualize_queries,),
    )


def _add_visualize_queries(viz_sub: argparse._SubParsersAction) -> None:
    p = viz_sub.add_parser(
        "queries",
        help="the paper's Figure 6: predicted glass (red) and the positions DQS selected (yellow dots)",
        description="Squash IMAGE to --size, predict, and draw on the photo at its own size the glass mask "
        "in red and, as yellow dots, the centres of the stride-16 cells whose features discerning query "
        "selection handed to the decoder. --all-layers instead writes a grid of panels: that picture, then "
        "every query's reference box before the first decoder layer and after each layer.",
    )
    p.add_argument("image", metavar="IMAGE", help="photo to inspect")
    p.add_argument(
        "--weights",
        default=None,
        help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
        "hf://owner/name/file; default: the shipped model)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="figure to write (.png, .jpg)")
    p.add_argument(
        "--size", type=_test_size, default=None, help="square network input side (default: the model's, 384)"
    )
    p.add_argument("--all-layers", action="store_true", help="also draw the reference boxes of every decoder layer")
    p.add_argument(
        "--boxes",
        type=int,
        default=None,
        metavar="N",
        help="with --all-layers, draw the boxes of the N best-ranked queries only (default: all)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=_run_visualize_queries)


def _run_visualize_queries(args: argparse.Namespace) -> int:
    from ..inference.scorers import load_model_for_inference
    from ..io import load_image, save_image
    from ..viz.queries import query_figure

    image = load_image(args.image)  # before loading a model
    _refuse_writing_inputs({"--out": args.out}, [args.image, args.weights], files=("--out",))
    model, _, _ = load_model_for_inference(args.weights, args.device)
    figure, info = query_figure(model, image, size=args.size, all_layers=args.all_layers, max_boxes=args.boxes)
    save_image(args.out, figure)
    h, w = info["image_size"]
    print(
        f"{args.out}: {len(info['points'])} DQS positions on a {info['grid'][0]}x{info['grid'][1]} grid, "
        f"{info['glass_fraction']:.1%} of the {w}x{h} photo predicted glass"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `visualize` to the `glassgem` subcommands."""
    _add_visualize(sub)
