"""`glassgem train`: train a GEM model (a preset, datasets, overrides; resumable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import TRAIN_PRESETS
from ..errors import ConfigError, GlassgemError
from .common import _add_data_args, _refuse_writing_inputs, _spec


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a GEM model (pretrain or fine-tune)",
        description="Train GEM with the paper's recipe. Checkpoints are written atomically "
        "to RUN_DIR/checkpoints; --resume continues exactly where a run stopped.",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"training preset: {', '.join(TRAIN_PRESETS)} (default gem-tiny; "
        "--resume continues with the run's own settings)",
    )
    _add_data_args(p, "--data", "training")
    _add_data_args(p, "--val", "validation")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="hold out this fraction of the training images for validation instead of --val",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, best/, final/)")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. max_iter=2000 lr=1e-4 model.dec_layers=6",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="start from these weights (glassgem dir or original checkpoint): pretrain -> fine-tune",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in RUN_DIR")
    p.add_argument(
        "--allow-test-selection",
        action="store_true",
        help="allow --val to be a test split (the original GEM selected on test; not recommended)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps in this invocation (resume later with --resume)",
    )
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ..config import apply_overrides, train_preset
    from ..config_checks import check_train_config
    from ..train.runner import run_training

    if args.data is None:
        raise GlassgemError("--data is required")
    _refuse_writing_inputs({"--out": args.out}, [args.init_from], roots=[args.data, args.val])
    saved = Path(args.out) / "config.json"
    if not args.resume:
        _refuse_existing_run(Path(args.out))
    if args.resume and saved.is_file():
        # The run's own settings, not the preset's: only what --set names changes (new schedule, say).
        cfg = apply_overrides(_saved_config(saved), args.set)
        _refuse_other_preset(args.preset, cfg, saved)
        print(f"resuming with the settings in {saved}" + (f" plus {' '.join(args.set)}" if args.set else ""))
    else:
        cfg = apply_overrides(train_preset(args.preset or "gem-tiny"), args.set)
    if args.init_from:
        cfg.init_from = args.init_from
    check_train_config(cfg)
    result = run_training(
        cfg,
        _spec(args, "data"),
        args.out,
        val=_spec(args, "val"),
        val_fraction=args.val_fraction,
        resume=args.resume,
        allow_test_selection=args.allow_test_selection,
        stop_after=args.max_steps,
    )
    best = f"; best validation IoU {result['best_iou']:.4f}" if result["best_iou"] >= 0 else ""
    print(f"stopped at step {result['step']}/{result['max_iter']}{best}; run folder {args.out}")
    return 0


def _refuse_existing_run(out: Path) -> None:
    """A new run never goes into the folder of another one (their checkpoints, logs, best/ and final/ would
    mix, and keep-last pruning would delete the new run's checkpoints)."""
    from ..train.checkpoint import list_checkpoints

    # Only what a new run would lose or mix with: a folder of a run killed before its first checkpoint (config,
    # a few log rows, which the new run's log replaces) may be started over.
    found = [name + "/" for name in ("best", "final") if (out / name).exists()]
    if list_checkpoints(out):
        found.insert(0, "checkpoints/")
    if found:
        raise ConfigError(
            f"--out {out}: already holds a training run ({', '.join(found)}); pass --resume to "
            "continue it, or choose a new --out"
        )


def _refuse_other_preset(preset: str | None, cfg, saved: Path) -> None:
    """--resume with a --preset whose model is not the run's: the run would go on with its own model, not the
    one asked for."""
    from ..config import train_preset

    if preset is not None and train_preset(preset).model.name != cfg.model.name:
        raise ConfigError(
            f"--preset {preset}: the run in {saved.parent} trains a {cfg.model.name} model ({saved}); "
            f"leave out --preset to resume it, or choose a new --out for a {preset} run"
        )


def _saved_config(path: Path):
    from ..config import TrainConfig

    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError, GlassgemError) as e:
        raise ConfigError(f"{path}: cannot read the run's saved settings to resume ({e})") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` to the `glassgem` subcommands."""
    _add_train(sub)
