"""`glassgem synth ...`: procedural glass scenes and the S-GSD ControlNet pipeline."""

from __future__ import annotations

import argparse

from .common import _add_group, _cpu_count, _parse_hw, _refuse_writing_inputs


# ---------------------------------------------------------------------------------------- synth
# `glassgem synth <what>`: a command group; each synthesiser adds its own nested subcommand here
# with the same `_add_synth_<name>(synth_sub)` / `_run_synth_<name>(args)` pair.
def _add_synth(sub: argparse._SubParsersAction) -> None:
    _add_group(
        sub,
        "synth",
        "synthesise glass training data (procedural, ControlNet)",
        (_add_synth_procedural, _add_synth_finetune_controlnet, _add_synth_generate),
    )


def _add_synth_procedural(synth_sub: argparse._SubParsersAction) -> None:
    p = synth_sub.add_parser(
        "procedural",
        help="composite glass panes, doors and windows onto photos (offline, exact masks)",
    )
    p.add_argument("--out", required=True, help="output dataset folder (images/, masks/, manifest.jsonl)")
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument(
        "--backgrounds",
        default=None,
        help="folder of background photos (default: scikit-image's bundled sample photos)",
    )
    p.add_argument(
        "--glass-free",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="this fraction of the scenes are plain glass-free background photos (augmented; mask all "
        "zero), evenly spread over the set (default 0; the experiment plans use 0.2)",
    )
    p.add_argument("--seed", type=int, default=0, help="scene i depends only on (seed, i) (default 0)")
    p.add_argument("--workers", type=_cpu_count(1), default=1, help="worker processes (default 1)")
    p.add_argument(
        "--size",
        type=_parse_hw,
        default=(384, 512),
        metavar="HxW",
        help="height x width of every scene, as --size everywhere (default 384x512)",
    )
    p.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="image files (default jpg)")
    p.add_argument(
        "--contact-sheet",
        default=None,
        metavar="FILE",
        help="also save a contact sheet of 16 samples (image | mask overlay) to FILE",
    )
    p.set_defaults(func=_run_synth_procedural)


def _run_synth_procedural(args: argparse.Namespace) -> int:
    from ..synth.procedural.pipeline import contact_sheet, synthesize

    _refuse_writing_inputs(
        {"--out": args.out, "--contact-sheet": args.contact_sheet}, [args.backgrounds], files=("--contact-sheet",)
    )
    summary = synthesize(
        args.out,
        n=args.n,
        seed=args.seed,
        backgrounds=args.backgrounds,
        workers=args.workers,
        size=(args.size[1], args.size[0]),  # the library takes (W, H)
        image_format=args.image_format,
        glass_free=args.glass_free,
    )
    print(
        f"wrote {summary['n']} scenes to {args.out} ({summary['generated']} new at "
        f"{summary['scenes_per_second']:.1f}/s, {summary['skipped']} already there; "
        f"{summary['no_glass']} without glass, {summary['glass_free_photos']} of them glass-free photos)"
    )
    if args.contact_sheet:
        contact_sheet(args.out, args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    return 0


def _add_synth_finetune_controlnet(synth_sub: argparse._SubParsersAction) -> None:
    from ..synth.diffusion.sd_components import DEFAULT_BASE, DEFAULT_CONTROLNET

    p = synth_sub.add_parser(
        "finetune-controlnet",
        help="fine-tune a ControlNet (Stable Diffusion frozen) on real glass image/mask pairs",
        description="Fine-tune a ControlNet on image/mask pairs with SD's UNet, VAE and text encoder frozen. "
        "Runs under Accelerate: `accelerate launch -m glassgem.cli synth finetune-controlnet ...` "
        "for several GPUs.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="training pairs (any known layout; its train split if it has splits)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder: checkpoints/, validation/, controlnet/ (the final weights)",
    )
    p.add_argument("--base", default=DEFAULT_BASE, help=f"Stable Diffusion folder or hub id (default {DEFAULT_BASE})")
    p.add_argument(
        "--init-controlnet",
        default=DEFAULT_CONTROLNET,
        metavar="ID",
        help=f"ControlNet to start from, folder or hub id, or 'unet' to copy the UNet's encoder "
        f"(default {DEFAULT_CONTROLNET})",
    )
    p.add_argument("--resolution", type=int, default=512, help="square training crop (default 512)")
    p.add_argument("--batch-size", type=int, default=4, help="per-process batch size (default 4)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=5e-6, help="AdamW learning rate, constant (default 5e-6)")
    p.add_argument("--max-steps", type=int, default=10_000, help="optimizer steps (default 10000)")
    p.add_argument(
        "--mixed-precision",
        default="no",
        choices=("no", "fp16", "bf16"),
        help="autocast for the ControlNet; frozen models are stored in that dtype (default no)",
    )
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N", help="steps between checkpoints")
    p.add_argument("--keep-last", type=int, default=3, metavar="K", help="checkpoints kept (default 3)")
    p.add_argument(
        "--validate-every",
        type=int,
        default=500,
        metavar="N",
        help="steps between validation grids (mask | generated), 0 = never (default 500)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--prompts", default=None, metavar="FILE", help="captions, one per line (default: the 23)")
    p.add_argument("--single-prompt", action="store_true", help="caption everything with the first prompt only")
    p.add_argument(
        "--allow-eval-masks",
        action="store_true",
        help="accept data from a folder named val/validation/test (leaks evaluation masks)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--num-workers", type=_cpu_count(0), default=2, help="data loader workers (default 2)")
    p.set_defaults(func=_run_synth_finetune_controlnet)


def _run_synth_finetune_controlnet(args: argparse.Namespace) -> int:
    from ..synth.diffusion.controlnet import FinetuneConfig, finetune_controlnet

    cfg = FinetuneConfig(
        data=args.data,
        out=args.out,
        base=args.base,
        init_controlnet=args.init_controlnet,
        resolution=args.resolution,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        max_steps=args.max_steps,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_every=args.checkpoint_every,
        keep_last=args.keep_last,
        validate_every=args.validate_every,
        resume=args.resume,
        prompts_file=args.prompts,
        single_prompt=args.single_prompt,
        allow_eval_masks=args.allow_eval_masks,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    summary = finetune_controlnet(cfg)
    if summary["main_process"]:  # under `accelerate launch` every process returns here
        print(
            f"trained steps {summary['start_step']}..{summary['step']} (last loss {summary['loss']:.4f}); "
            f"ControlNet: {summary['controlnet']}"
        )
    return 0


def _add_synth_generate(synth_sub: argparse._SubParsersAction) -> None:
    from ..synth.diffusion.sd_components import DEFAULT_BASE, SCHEDULERS

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
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="drop images whose CLIP score (100 x cosine to the prompt) is below S",
    )
    p.add_argument("--resolution", type=int, default=512, help="short side to generate at (default 512)")
    p.add_argument("--scheduler", default="unipc", choices=SCHEDULERS, help="sampler (default unipc)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "fp32", "fp16", "bf16"),
        help="model dtype (default auto: fp16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--image-format", default="jpg", choices=("jpg", "png"), help="image files (default jpg)")
    p.add_argument(
        "--allow-eval-masks", action="store_true", help="accept masks from a folder named val/validation/test"
    )
    p.set_defaults(func=_run_synth_generate)


def _run_synth_generate(args: argparse.Namespace) -> int:
    from ..synth.diffusion.generate import GenerateConfig, generate

    cfg = GenerateConfig(
        masks=args.masks,
        controlnet=args.controlnet,
        out=args.out,
        scale=args.scale,
        base=args.base,
        steps=args.steps,
        guidance=args.guidance,
        conditioning_scale=args.conditioning_scale,
        seed=args.seed,
        prompts_file=args.prompts,
        single_prompt=args.single_prompt,
        clip_filter=args.clip_filter,
        min_score=args.min_score,
        resolution=args.resolution,
        scheduler=args.scheduler,
        dtype=args.dtype,
        image_format=args.image_format,
        allow_eval_masks=args.allow_eval_masks,
    )
    s = generate(cfg)
    if s["main_process"]:
        print(
            f"{s['jobs']} jobs: {s['done_before']} already done, {s['generated']} generated here; "
            f"{s['kept']} images kept, {s['dropped']} dropped by the CLIP filter -> {s['out']}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `synth` command group (procedural, finetune-controlnet, generate)."""
    _add_synth(sub)
