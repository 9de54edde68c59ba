"""Dataset, model and inspection tools: data check, convert, average, bench, visualize, analyze, export."""
from __future__ import annotations

import argparse

from ..config import MODEL_PRESETS
from ..errors import GlassgemError
from .common import _add_group, _test_size


# ----------------------------------------------------------------------------------------- data
# `glassgem data <what>`: dataset tools.
def _add_data(sub: argparse._SubParsersAction) -> None:
    _add_group(sub, "data", "dataset tools (check a dataset before training or evaluation; glass-free crops)",
               (_add_data_check, _add_data_negatives, _add_data_photos))


def _add_data_check(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "check",
        help="report every problem of a dataset at once (exit 1 if there is any error)",
        description="Scan image/mask pairs and list unreadable files, missing or orphan masks, size "
        "mismatches, duplicate stems and empty folders (errors), and non-binary or empty masks (warnings).",
    )
    p.add_argument("dir", nargs="?", default=None, help="dataset folder (optional with --images/--masks)")
    p.add_argument("--layout", default="auto", choices=("auto", "gsds", "gdd", "gsd", "sgsd"),
                   help="folder layout (default: auto-detect)")
    p.add_argument("--split", default=None, help="train, val or test (default: every split found)")
    p.add_argument("--images", default=None, help="images folder (with --masks; relative to DIR if given)")
    p.add_argument("--masks", default=None, help="masks folder (with --images)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--strict", action="store_true", help="count warnings as errors")
    p.set_defaults(func=_run_data_check)


def _run_data_check(args: argparse.Namespace) -> int:
    import json

    from ..data.checks import check_dataset
    from ..io import atomic_write_text

    if args.dir is None and args.images is None:
        raise GlassgemError("data check: give a dataset folder, or --images and --masks")
    report = check_dataset(args.dir, layout=args.layout, split=args.split, images=args.images,
                           masks=args.masks, strict=args.strict)  # progress bar on big sets
    print(report.to_text())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.ok else 1


def _add_data_negatives(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "negatives",
        help="crop the largest glass-free rectangle of every photo (negatives: measure or train false glass)",
        description="For every image/mask pair, cut the largest rectangle that holds no glass (aspect at most "
        "--max-aspect) and write it to OUT/images/<stem>.png with an all-background mask in OUT/masks/. "
        "`glassgem evaluate --data OUT` then measures false glass (MAE = mean fraction predicted as glass; "
        "IoU = fraction of crops with none); OUT can also be mixed into training data.",
    )
    p.add_argument("dir", help="dataset folder (any known layout)")
    p.add_argument("--out", required=True, help="output folder (images/, masks/, negatives.json)")
    p.add_argument("--layout", default="auto", choices=("auto", "gsds", "gdd", "gsd", "sgsd"),
                   help="folder layout (default: auto-detect)")
    p.add_argument("--split", default=None, help="train, val or test (default: auto)")
    p.add_argument("--min-side", type=int, default=128,
                   help="skip photos whose glass-free rectangle has a side shorter than this (pixels)")
    p.add_argument("--max-aspect", type=float, default=2.0, help="longest / shortest side of a crop at most")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="write only N of the eligible crops, drawn with --seed (e.g. a set share for training)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--prefix", default="", help="put this before every crop's name (e.g. neg_, to mix the crops "
                   "into the folder of the photos they came from)")
    p.set_defaults(func=_run_data_negatives)


def _run_data_negatives(args: argparse.Namespace) -> int:
    from ..data.layouts import find_pairs
    from ..data.negatives import glass_free_crops

    if args.prefix and (any(c in args.prefix for c in "/\\:\0") or args.prefix.startswith(".")):
        raise GlassgemError(f"--prefix {args.prefix!r}: must be a plain part of a file name (no /, \\, : or "
                            "leading .), so every crop stays inside --out")
    pairs = find_pairs(args.dir, args.layout, args.split)
    summary = glass_free_crops(pairs, args.out, min_side=args.min_side, max_aspect=args.max_aspect,
                               sample=args.sample, seed=args.seed, prefix=args.prefix)
    print(f"{summary.line()} in {args.out} (from {len(pairs)} photos)")
    return 0


def _add_data_photos(data_sub: argparse._SubParsersAction) -> None:
    from ..data.photos import DEBIAN_PACKAGES, HELDOUT_SOURCES, PYTHON_PACKAGES

    p = data_sub.add_parser(
        "photos",
        help="build a corpus of real glass-free photos from installed packages (train/ and held-out/ by source)",
        description="Gather the glass-free photos that installed packages ship (Debian desktop backgrounds: "
        f"{', '.join(DEBIAN_PACKAGES)}; the sample photos of {', '.join(PYTHON_PACKAGES)}) and any --folder, "
        "drop unreadable files, resolution variants, near-duplicates and photos checked by eye to show glass, "
        "split them by source and write OUT/train and OUT/heldout (images/ + all-zero masks/), "
        "OUT/manifest.jsonl (source, licence, original file), OUT/dropped.jsonl and contact sheets. "
        "Install the Debian sources first: apt-get install " + " ".join(DEBIAN_PACKAGES),
    )
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--folder", action="append", default=[], metavar="SOURCE=DIR",
                   help="also read the photos of DIR as source SOURCE (repeatable)")
    p.add_argument("--only-folders", action="store_true", help="read only the --folder sources, no packages")
    p.add_argument("--heldout", default=",".join(HELDOUT_SOURCES), metavar="SRC,SRC",
                   help=f"sources used only to measure false glass (default: {','.join(HELDOUT_SOURCES)})")
    p.add_argument("--crops", type=int, default=3, help="random crops per training photo besides the whole photo (default 3)")
    p.add_argument("--long-side", type=int, default=640, help="scale photos down to this long side (default 640, as gdd-dev)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops (default 0)")
    p.add_argument("--keep-all", action="store_true", help="keep the photos excluded by eye (to look at them again)")
    p.set_defaults(func=_run_data_photos)


def _run_data_photos(args: argparse.Namespace) -> int:
    from ..data.photos import build_corpus, installed_photos

    folders = {}
    for item in args.folder:
        source, sep, folder = item.partition("=")
        if not sep or not source or not folder:
            raise GlassgemError(f"--folder {item!r}: expected SOURCE=DIR, e.g. --folder myphotos=~/pictures")
        folders[source] = folder
    if args.only_folders:
        photos, missing = installed_photos((), (), folders)
    else:
        photos, missing = installed_photos(folders=folders)
    if missing:
        print(f"note: no photos from {', '.join(missing)} (not installed)")
    heldout = tuple(s for s in args.heldout.split(",") if s)
    corpus = build_corpus(photos, args.out, heldout=heldout, crops=args.crops, long_side=args.long_side,
                          seed=args.seed, keep_all=args.keep_all)
    print(corpus.line())
    return 0


# -------------------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an original GEM checkpoint (model_final.pth/.pkl) to a glassgem directory")
    p.add_argument("src", help="original checkpoint ({'model': state_dict} with detectron2/MaskDINO key names)")
    p.add_argument("dst", help="output directory (config.json + model.safetensors)")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from ..hub.pretrained import convert

    summary = convert(args.src, args.dst)
    print(f"converted {args.src} ({summary['encoder']}, {summary['tensors']} tensors, "
          f"{summary['parameters'] / 1e6:.1f} M parameters) -> {args.dst}")
    return 0


# -------------------------------------------------------------------------------------- average
def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average", help="average the weights of checkpoints of one model into a glassgem directory",
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

    out = average_checkpoints(args.sources, args.out)
    print(f"averaged {len(args.sources)} checkpoint(s) -> {out}")
    return 0


# ---------------------------------------------------------------------------------------- bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="inference latency, FLOPs and efficiency of a GEM model (random input)")
    p.add_argument("--model", default=None, choices=tuple(MODEL_PRESETS),
                   help="time this preset with random weights (default: the shipped model, or --weights)")
    p.add_argument("--weights", default=None, help="checkpoint to load instead of random weights")
    p.add_argument("--size", type=_test_size, default=384, help="square input side, a multiple of 32 (default 384)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs after 3 warm-up runs (default 10)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"),
                   help="torch (default) or onnxruntime: export the model to ONNX first (verified), then time "
                   "onnxruntime's CPU provider on it (needs glassgem[export])")
    p.add_argument("--onnx", default=None, metavar="FILE",
                   help="time this exported file with onnxruntime (implies --runtime onnxruntime)")
    p.add_argument("--eager", action="store_true",
                   help="time eager PyTorch, not the TorchScript graph that predict/evaluate run for GEM-Lite")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers to FILE")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ..inference.bench import benchmark, format_report, write_json
    from ..inference.runtime import resolve_device

    if args.model and args.weights:
        raise GlassgemError("bench: give --model (a preset, random weights) or --weights, not both")
    if args.threads is not None and args.threads < 1:
        raise GlassgemError(f"--threads must be 1 or more, got {args.threads}")
    resolve_device(args.device)  # a bad --device: one line, before any model is built
    result = benchmark(model=args.model, weights=args.weights, size=args.size, threads=args.threads,
                       dtype=args.dtype, batch=args.batch, runs=args.runs, device=args.device,
                       runtime=args.runtime, onnx=args.onnx, eager=args.eager)
    print(format_report(result))
    if args.json:
        write_json(result, args.json)
    return 0


# ------------------------------------------------------------------------------------ visualize
# `glassgem visualize <what>`: inspection figures of a model; each adds a nested subcommand here.
def _add_visualize(sub: argparse._SubParsersAction) -> None:
    _add_group(sub, "visualize", "inspection figures of a model (DQS query positions, reference boxes)",
               (_add_visualize_queries,))


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
    p.add_argument("--weights", default=None,
                   help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
                        "hf://owner/name/file; default: the shipped model)")
    p.add_argument("--out", required=True, metavar="FILE", help="figure to write (.png, .jpg)")
    p.add_argument("--size", type=_test_size, default=None, help="square network input side (default: the model's, 384)")
    p.add_argument("--all-layers", action="store_true", help="also draw the reference boxes of every decoder layer")
    p.add_argument("--boxes", type=int, default=None, metavar="N",
                   help="with --all-layers, draw the boxes of the N best-ranked queries only (default: all)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=_run_visualize_queries)


def _run_visualize_queries(args: argparse.Namespace) -> int:
    from ..inference.scorers import load_model_for_inference
    from ..io import load_image, save_image
    from ..viz.queries import query_figure

    image = load_image(args.image)  # before loading a model
    model, _, _ = load_model_for_inference(args.weights, args.device)
    figure, info = query_figure(model, image, size=args.size, all_layers=args.all_layers, max_boxes=args.boxes)
    save_image(args.out, figure)
    h, w = info["image_size"]
    print(f"{args.out}: {len(info['points'])} DQS positions on a {info['grid'][0]}x{info['grid'][1]} grid, "
          f"{info['glass_fraction']:.1%} of the {w}x{h} photo predicted glass")
    return 0


# -------------------------------------------------------------------------------------- analyze
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
    p.add_argument("--data", nargs="+", required=True, metavar="NAME=DIR",
                   help="image sets: a dataset root (any known layout, every split) or a plain folder of images")
    p.add_argument("--out", required=True, metavar="FILE", help="plot to write (.png, .jpg, .pdf, .svg)")
    p.add_argument("--features", default="encoder", choices=("encoder", "clip"),
                   help="encoder: GEM encoder, global average pool (default); clip: CLIP image embeddings")
    p.add_argument("--weights", default=None,
                   help="GEM weights for encoder features (default: the shipped model)")
    p.add_argument("--clip-model", default=None, metavar="PATH_OR_ID",
                   help="CLIP folder or hub id for --features clip (a hub id needs network or a filled cache)")
    p.add_argument("--max-per-set", type=int, default=200, metavar="N",
                   help="sample at most N images per set, the same ones for the same --seed (default 200)")
    p.add_argument("--perplexity", type=float, default=30.0,
                   help="t-SNE perplexity, lowered to (n-1)/3 for small sets (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and of t-SNE (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per feature batch (default 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=_run_analyze_tsne)


def _run_analyze_tsne(args: argparse.Namespace) -> int:
    from ..inference.runtime import resolve_device
    from ..inference.scorers import load_model_for_inference
    from ..viz.tsne import load_sets, tsne_figure

    load_sets(args.data, args.max_per_set, args.seed)  # fail on bad sets before loading a model
    model, device = None, resolve_device(args.device)
    if args.features == "encoder":
        model, device, _ = load_model_for_inference(args.weights, args.device)
    elif args.clip_model is None:
        raise GlassgemError("--features clip needs --clip-model (a local CLIP folder or a hub id)")
    s = tsne_figure(args.data, args.out, features=args.features, model=model, clip_model=args.clip_model,
                    max_per_set=args.max_per_set, perplexity=args.perplexity, seed=args.seed,
                    batch_size=args.batch_size, device=device)
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    print(f"t-SNE of {args.features} features ({counts}; perplexity {s['perplexity']:.3g}) -> {s['plot']}, {s['csv']}")
    return 0


# --------------------------------------------------------------------------------------- export
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
    p.add_argument("--weights", default=None,
                   help="glassgem model dir, original GEM checkpoint or Hugging Face Hub id (owner/name, "
                        "hf://owner/name/file; default: the shipped model)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .onnx file (written atomically)")
    p.add_argument("--size", default=None, metavar="N|HxW",
                   help="input size: N (square) or HxW (height x width), multiples of 32 "
                        "(default: the model's, 384)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 or newer (default 18)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest accepted abs difference of the scores, onnxruntime vs PyTorch (default 1e-3)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--no-optimize", action="store_true",
                   help="skip the slow op-fusion pass (constants are still folded): ~40%% quicker export, "
                        "same onnxruntime speed for GEM-Tiny")
    p.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ..inference.export import export_onnx
    from ..hub.pretrained import GEM

    model = GEM.from_pretrained(args.weights)
    report = export_onnx(model, args.out, size=args.size, dynamic_batch=args.dynamic_batch, opset=args.opset,
                         verify=not args.no_verify, tolerance=args.tolerance, optimize=not args.no_optimize)
    print(report.line())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add data, convert, average, bench, visualize, analyze and export to the `glassgem` subcommands."""
    for add in (_add_data, _add_convert, _add_average, _add_bench, _add_visualize, _add_analyze, _add_export):
        add(sub)
