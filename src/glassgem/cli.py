"""The `glassgem` command. Thin: it parses arguments and calls the library.

Each command is a pair: `_add_<name>(subparsers)` declares its arguments and `_run_<name>(args)`
does the work, importing what it needs lazily so that `glassgem --help` stays fast.
User errors (GlassgemError) are printed as one line naming the file and the problem, exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import GlassgemError


# --------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in default end to end (what `make demo` runs)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--weights", default=None, help="model to run (default: the shipped GEM-Lite)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.out, weights=args.weights)


# ------------------------------------------------------------------------------ evaluate-masks
def _add_evaluate_masks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-masks",
        help="score predicted masks against ground truth (GSD-S IoU, max F-beta, MAE, BER)",
        description="Pair prediction files with ground-truth masks by file stem and print IoU, max "
        "F-beta (beta^2=0.3), MAE and BER exactly as the GSD-S tables compute them. Predictions may be "
        "binary (0/1 or 0/255) or soft (0..255 = value/255; 16-bit = value/65535).",
    )
    p.add_argument("--pred", required=True, help="folder of predicted masks or soft maps")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks (0/1 or 0/255)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON to FILE")
    p.add_argument("--legacy", action="store_true",
                   help="reproduce the original code exactly: NaN IoU/BER for images without glass etc.")
    p.add_argument("--resize-pred", action="store_true",
                   help="resize predictions to the ground-truth size (soft maps bilinearly, binary "
                        "maps nearest) instead of failing on a size mismatch")
    p.add_argument("--workers", type=int, default=None, help="file-reading threads (default: auto)")
    p.set_defaults(func=_run_evaluate_masks)


def _run_evaluate_masks(args: argparse.Namespace) -> int:
    from .metrics import evaluate_pairs, format_table, pair_files, write_json

    pairs, extra = pair_files(args.pred, args.gt)
    if extra:
        print(f"note: {len(extra)} prediction file(s) in {args.pred} have no ground truth and are ignored "
              f"(e.g. {extra[0].name})", file=sys.stderr)
    results = evaluate_pairs(pairs, legacy=args.legacy, resize_pred=args.resize_pred, workers=args.workers)
    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    return 0


# ---------------------------------------------------------------------------------------- synth
# `glassgem synth <what>`: a command group; each synthesiser adds its own nested subcommand here
# with the same `_add_synth_<name>(synth_sub)` / `_run_synth_<name>(args)` pair.
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesise glass training data (procedural, ControlNet)")
    synth_sub = p.add_subparsers(dest="synth_command", metavar="SYNTH_COMMAND")
    # `glassgem synth` alone prints the group's help; a subcommand's own default replaces this func.
    p.set_defaults(func=lambda args: _print_help(p))
    for add in (_add_synth_procedural, _add_synth_finetune_controlnet, _add_synth_generate):
        add(synth_sub)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x384, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be >= 32")
    return w, h


def _add_synth_procedural(synth_sub: argparse._SubParsersAction) -> None:
    p = synth_sub.add_parser(
        "procedural",
        help="composite glass panes, doors and windows onto photos (offline, exact masks)",
    )
    p.add_argument("--out", required=True, help="output dataset folder (images/, masks/, manifest.jsonl)")
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument("--backgrounds", default=None,
                   help="folder of background photos (default: scikit-image's bundled sample photos)")
    p.add_argument("--seed", type=int, default=0, help="scene i depends only on (seed, i) (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--size", type=_parse_size, default=(512, 384), help="WxH of every scene (default 512x384)")
    p.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="image files (default jpg)")
    p.add_argument("--contact-sheet", default=None, metavar="FILE",
                   help="also save a contact sheet of 16 samples (image | mask overlay) to FILE")
    p.set_defaults(func=_run_synth_procedural)


def _run_synth_procedural(args: argparse.Namespace) -> int:
    from .synth.procedural import contact_sheet, synthesize

    summary = synthesize(args.out, n=args.n, seed=args.seed, backgrounds=args.backgrounds,
                         workers=args.workers, size=args.size, image_format=args.image_format)
    print(f"wrote {summary['n']} scenes to {args.out} ({summary['generated']} new at "
          f"{summary['scenes_per_second']:.1f}/s, {summary['skipped']} already there; "
          f"{summary['no_glass']} without glass)")
    if args.contact_sheet:
        contact_sheet(args.out, args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    return 0


def _add_synth_finetune_controlnet(synth_sub: argparse._SubParsersAction) -> None:
    from .synth.sd_components import DEFAULT_BASE, DEFAULT_CONTROLNET

    p = synth_sub.add_parser(
        "finetune-controlnet",
        help="fine-tune a ControlNet (Stable Diffusion frozen) on real glass image/mask pairs",
        description="Fine-tune a ControlNet on image/mask pairs with SD's UNet, VAE and text encoder frozen. "
                    "Runs under Accelerate: `accelerate launch -m glassgem.cli synth finetune-controlnet ...` "
                    "for several GPUs.",
    )
    p.add_argument("--data", required=True, metavar="DIR",
                   help="training pairs (any known layout; its train split if it has splits)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: checkpoints/, validation/, controlnet/ (the final weights)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"Stable Diffusion folder or hub id (default {DEFAULT_BASE})")
    p.add_argument("--init-controlnet", default=DEFAULT_CONTROLNET, metavar="ID",
                   help=f"ControlNet to start from, folder or hub id, or 'unet' to copy the UNet's encoder "
                        f"(default {DEFAULT_CONTROLNET})")
    p.add_argument("--resolution", type=int, default=512, help="square training crop (default 512)")
    p.add_argument("--batch-size", type=int, default=4, help="per-process batch size (default 4)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=5e-6, help="AdamW learning rate, constant (default 5e-6)")
    p.add_argument("--max-steps", type=int, default=10_000, help="optimizer steps (default 10000)")
    p.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"),
                   help="autocast for the ControlNet; frozen models are stored in that dtype (default no)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N", help="steps between checkpoints")
    p.add_argument("--keep-last", type=int, default=3, metavar="K", help="checkpoints kept (default 3)")
    p.add_argument("--validate-every", type=int, default=500, metavar="N",
                   help="steps between validation grids (mask | generated), 0 = never (default 500)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--prompts", default=None, metavar="FILE", help="captions, one per line (default: the 23)")
    p.add_argument("--single-prompt", action="store_true", help="caption everything with the first prompt only")
    p.add_argument("--allow-eval-masks", action="store_true",
                   help="accept data from a folder named val/validation/test (leaks evaluation masks)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers (default 2)")
    p.set_defaults(func=_run_synth_finetune_controlnet)


def _run_synth_finetune_controlnet(args: argparse.Namespace) -> int:
    from .synth.controlnet import FinetuneConfig, finetune_controlnet

    cfg = FinetuneConfig(
        data=args.data, out=args.out, base=args.base, init_controlnet=args.init_controlnet,
        resolution=args.resolution, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        max_steps=args.max_steps, mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing, checkpoint_every=args.checkpoint_every,
        keep_last=args.keep_last, validate_every=args.validate_every, resume=args.resume,
        prompts_file=args.prompts, single_prompt=args.single_prompt, allow_eval_masks=args.allow_eval_masks,
        seed=args.seed, num_workers=args.num_workers,
    )
    summary = finetune_controlnet(cfg)
    if summary["main_process"]:  # under `accelerate launch` every process returns here
        print(f"trained steps {summary['start_step']}..{summary['step']} (last loss {summary['loss']:.4f}); "
              f"ControlNet: {summary['controlnet']}")
    return 0


def _add_synth_generate(synth_sub: argparse._SubParsersAction) -> None:
    from .synth.sd_components import DEFAULT_BASE, SCHEDULERS

    p = synth_sub.add_parser(
        "generate",
        help="render S-GSD images from glass masks with a fine-tuned ControlNet (resumable, sharded)",
        description="Every mask x --scale samples, each a deterministic (mask, prompt, seed) job; reruns skip "
                    "finished jobs; `accelerate launch -m glassgem.cli synth generate ...` splits the jobs.",
    )
    p.add_argument("--masks", required=True, metavar="DIR", help="folder of masks (or a dataset root with masks/)")
    p.add_argument("--controlnet", required=True, metavar="DIR", help="fine-tuned ControlNet folder or hub id")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset: images/, masks/, manifest.jsonl")
    p.add_argument("--scale", type=int, default=5, help="samples per mask (default 5)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"Stable Diffusion folder or hub id (default {DEFAULT_BASE})")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--conditioning-scale", type=float, default=1.0, help="ControlNet residual scale (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="base seed; a job's seed is a hash of (seed, mask, k)")
    p.add_argument("--prompts", default=None, metavar="FILE", help="prompts, one per line (default: the 23)")
    p.add_argument("--single-prompt", action="store_true", help="use the first prompt only")
    p.add_argument("--clip-filter", default=None, metavar="MODEL", help="CLIP model folder or hub id for filtering")
    p.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="drop images whose CLIP score (100 x cosine to the prompt) is below S")
    p.add_argument("--resolution", type=int, default=512, help="short side to generate at (default 512)")
    p.add_argument("--scheduler", default="unipc", choices=SCHEDULERS, help="sampler (default unipc)")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="model dtype (default auto: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--image-format", default="jpg", choices=("jpg", "png"), help="image files (default jpg)")
    p.add_argument("--allow-eval-masks", action="store_true",
                   help="accept masks from a folder named val/validation/test")
    p.set_defaults(func=_run_synth_generate)


def _run_synth_generate(args: argparse.Namespace) -> int:
    from .synth.generate import GenerateConfig, generate

    cfg = GenerateConfig(
        masks=args.masks, controlnet=args.controlnet, out=args.out, scale=args.scale, base=args.base,
        steps=args.steps, guidance=args.guidance, conditioning_scale=args.conditioning_scale, seed=args.seed,
        prompts_file=args.prompts, single_prompt=args.single_prompt, clip_filter=args.clip_filter,
        min_score=args.min_score, resolution=args.resolution, scheduler=args.scheduler, dtype=args.dtype,
        image_format=args.image_format, allow_eval_masks=args.allow_eval_masks,
    )
    s = generate(cfg)
    if s["main_process"]:
        print(f"{s['jobs']} jobs: {s['done_before']} already done, {s['generated']} generated here; "
              f"{s['kept']} images kept, {s['dropped']} dropped by the CLIP filter -> {s['out']}")
    return 0


# ----------------------------------------------------------------------------------------- data
# `glassgem data <what>`: dataset tools.
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools (check a dataset before training or evaluation)")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p.set_defaults(func=lambda args: _print_help(p))
    _add_data_check(data_sub)


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

    from .data.checks import check_dataset
    from .io import atomic_write_text

    if args.dir is None and args.images is None:
        raise GlassgemError("data check: give a dataset folder, or --images and --masks")
    report = check_dataset(args.dir, layout=args.layout, split=args.split, images=args.images,
                           masks=args.masks, strict=args.strict)  # progress bar on big sets
    print(report.to_text())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.ok else 1


# -------------------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an original GEM checkpoint (model_final.pth/.pkl) to a glassgem directory")
    p.add_argument("src", help="original checkpoint ({'model': state_dict} with detectron2/MaskDINO key names)")
    p.add_argument("dst", help="output directory (config.json + model.safetensors)")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .model.checkpoints import convert

    summary = convert(args.src, args.dst)
    print(f"converted {args.src} ({summary['encoder']}, {summary['tensors']} tensors, "
          f"{summary['parameters'] / 1e6:.1f} M parameters) -> {args.dst}")
    return 0


# ---------------------------------------------------------------------------------------- bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="inference latency, FLOPs and efficiency of a GEM model (random input)")
    p.add_argument("--model", default="gem-tiny", choices=("gem-tiny", "gem-base", "gem-lite", "debug"),
                   help="model preset (default gem-tiny; random weights unless --weights)")
    p.add_argument("--weights", default=None, help="checkpoint to load instead of random weights")
    p.add_argument("--size", type=int, default=384, help="square input side, a multiple of 32 (default 384)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs after 3 warm-up runs (default 10)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the numbers to FILE")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import benchmark, format_report, write_json

    result = benchmark(model=args.model, weights=args.weights, size=args.size, threads=args.threads,
                       dtype=args.dtype, batch=args.batch, runs=args.runs, device=args.device)
    print(format_report(result))
    if args.json:
        write_json(result, args.json)
    return 0


# ---------------------------------------------------------------------------------- train / evaluate
def _add_data_args(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, metavar="DIR", help=f"{what} dataset folder (any known layout)")
    dest = flag.lstrip("-").replace("-", "_")
    p.add_argument(f"{flag}-split", dest=f"{dest}_split", default=None, help="split name (default: auto)")
    p.add_argument(f"{flag}-layout", dest=f"{dest}_layout", default="auto", help="dataset layout (default: auto)")


def _spec(args: argparse.Namespace, dest: str):
    from .train.runner import DataSpec

    root = getattr(args, dest)
    if root is None:
        return None
    return DataSpec(root=root, split=getattr(args, f"{dest}_split"), layout=getattr(args, f"{dest}_layout"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GEM model (pretrain or fine-tune)",
                       description="Train GEM with the paper's recipe. Checkpoints are written atomically "
                       "to RUN_DIR/checkpoints; --resume continues exactly where a run stopped.")
    p.add_argument("--preset", default="gem-tiny", help="training preset: gem-tiny, gem-base, gem-lite, debug")
    _add_data_args(p, "--data", "training")
    _add_data_args(p, "--val", "validation")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold out this fraction of the training images for validation instead of --val")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, best/, final/)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. max_iter=2000 lr=1e-4 model.dec_layers=6")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from these weights (glassgem dir or original checkpoint): pretrain -> fine-tune")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in RUN_DIR")
    p.add_argument("--allow-test-selection", action="store_true",
                   help="allow --val to be a test split (the original GEM selected on test; not recommended)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in this invocation (resume later with --resume)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .config import apply_overrides, train_preset
    from .train.runner import run_training

    if args.data is None:
        raise GlassgemError("--data is required")
    cfg = apply_overrides(train_preset(args.preset), args.set)
    if args.init_from:
        cfg.init_from = args.init_from
    result = run_training(cfg, _spec(args, "data"), args.out, val=_spec(args, "val"),
                          val_fraction=args.val_fraction, resume=args.resume,
                          allow_test_selection=args.allow_test_selection, stop_after=args.max_steps)
    best = f"; best validation IoU {result['best_iou']:.4f}" if result["best_iou"] >= 0 else ""
    print(f"stopped at step {result['step']}/{result['max_iter']}{best}; run folder {args.out}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset with the GSD-S metrics",
                       description="Squash each image to --size, predict, resize the scores back to the "
                       "original size and score IoU / max F-beta / MAE / BER (also the zero-shot protocol).")
    p.add_argument("--weights", default=None,
                   help="glassgem model dir or original GEM checkpoint (default: the shipped model)")
    _add_data_args(p, "--data", "evaluation")
    p.add_argument("--size", type=int, default=None, help="square test size (default: the model's, 384)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--save-masks", default=None, metavar="DIR", help="write <stem>.png masks (0/255) here")
    p.add_argument("--save-prob", action="store_true", help="with --save-masks, also write glass probability maps")
    p.add_argument("--legacy", action="store_true", help="original NaN behaviour for images without glass")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, load_model_for_inference
    from .metrics import format_table, write_json
    from .train.runner import load_pairs

    if args.data is None:
        raise GlassgemError("--data is required")
    model, device, dtype = load_model_for_inference(args.weights, args.device, args.dtype)
    pairs = load_pairs(_spec(args, "data"))
    size = args.size or model.cfg.image_size
    results = evaluate_model(model, pairs, size=size, batch_size=args.batch_size, device=device, dtype=dtype,
                             save_masks=args.save_masks, save_prob=args.save_prob, legacy=args.legacy)
    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    return 0


# -------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="write glass masks (and optional overlays, probability maps) for photos",
        description="Segment glass in image files, folders and glob patterns (quote them to let glassgem "
        "expand them, ** included). Each photo is squashed to --size, scored, and the scores are resized "
        "back: OUT/<stem>.png is a 0/255 mask at the photo's own size. Unreadable photos are reported and "
        "skipped (exit code 1 if any); photos sharing a stem get _2, _3, ... (reported).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--weights", default=None,
                   help="glassgem model dir or original GEM checkpoint (default: the shipped model)")
    p.add_argument("--size", type=int, default=None,
                   help="square test size, a multiple of 32 (default: the model's, 384)")
    p.add_argument("--batch-size", type=int, default=4, help="photos per forward pass (default 4)")
    p.add_argument("--recursive", action="store_true", help="also read the subfolders of folder inputs")
    p.add_argument("--save-prob", action="store_true", help="also write <stem>_prob.png (glass probability x 255)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg (glass tinted red)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype (default fp32)")
    p.add_argument("--onnx", default=None, metavar="FILE",
                   help="score with a graph from `glassgem export onnx` (onnxruntime) instead of PyTorch weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .predict import build_scorer, collect_inputs, predict_files

    photos = collect_inputs(args.inputs, recursive=args.recursive, out=args.out)  # before loading a model
    if args.onnx:
        if args.weights or args.dtype != "fp32":
            raise GlassgemError("--onnx runs an exported fp32 graph: leave out --weights and --dtype")
        from .onnx_runner import load_onnx_scorer

        scorer = load_onnx_scorer(args.onnx, device=args.device or "auto")
        size = scorer.square_size(args.size)
    else:
        scorer, size = build_scorer(args.weights, args.device, args.dtype), args.size
    summary = predict_files(photos, args.out, scorer, size=size, batch_size=args.batch_size,
                            save_prob=args.save_prob, overlay=args.overlay, progress=not args.quiet)
    print(summary.line())
    return 1 if summary.failed else 0


# ------------------------------------------------------------------------------------ visualize
# `glassgem visualize <what>`: inspection figures of a model; each adds a nested subcommand here.
def _add_visualize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="inspection figures of a model (DQS query positions, reference boxes)")
    viz_sub = p.add_subparsers(dest="visualize_command", metavar="VISUALIZE_COMMAND")
    p.set_defaults(func=lambda args: _print_help(p))
    for add in (_add_visualize_queries,):
        add(viz_sub)


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
                   help="glassgem model dir or original GEM checkpoint (default: the shipped model)")
    p.add_argument("--out", required=True, metavar="FILE", help="figure to write (.png, .jpg)")
    p.add_argument("--size", type=int, default=None, help="square network input side (default: the model's, 384)")
    p.add_argument("--all-layers", action="store_true", help="also draw the reference boxes of every decoder layer")
    p.add_argument("--boxes", type=int, default=None, metavar="N",
                   help="with --all-layers, draw the boxes of the N best-ranked queries only (default: all)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=_run_visualize_queries)


def _run_visualize_queries(args: argparse.Namespace) -> int:
    from .evaluate import load_model_for_inference
    from .io import load_image, save_image
    from .viz.queries import query_figure

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
    p = sub.add_parser("analyze", help="analyses of image sets (t-SNE of real vs synthetic features)")
    analyze_sub = p.add_subparsers(dest="analyze_command", metavar="ANALYZE_COMMAND")
    p.set_defaults(func=lambda args: _print_help(p))
    for add in (_add_analyze_tsne,):
        add(analyze_sub)


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
    from .evaluate import load_model_for_inference, resolve_device
    from .viz.tsne import load_sets, tsne_figure

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
    p = sub.add_parser("export", help="export a model for deployment (ONNX)")
    export_sub = p.add_subparsers(dest="export_command", metavar="FORMAT")
    p.set_defaults(func=lambda args: _print_help(p))
    _add_export_onnx(export_sub)


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
                   help="glassgem model dir or original GEM checkpoint (default: the shipped model)")
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
    from .export import export_onnx
    from .model.gem import GEM

    model = GEM.from_pretrained(args.weights)
    report = export_onnx(model, args.out, size=args.size, dynamic_batch=args.dynamic_batch, opset=args.opset,
                         verify=not args.no_verify, tolerance=args.tolerance, optimize=not args.no_optimize)
    print(report.line())
    return 0


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassgem",
        description="Glass surface segmentation with GEM: predict, evaluate, train, synthesise data.",
    )
    parser.add_argument("--version", action="version", version=f"glassgem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_evaluate_masks, _add_synth, _add_data, _add_convert, _add_bench,
                _add_train, _add_evaluate, _add_predict, _add_visualize, _add_analyze, _add_export):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GlassgemError as e:
        print(f"glassgem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glassgem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
