"""The data sets of an experiment: the user's folders, or procedural scenes generated in their place.

`data.real` is fine-tuned on (its train split) and, unless `data.eval` is given, scored on (its test split,
else val). Every other data set is a pretraining set: a run with `scale = N` takes N x |real train| of its
images, the first ones of a seeded order, so a smaller scale's images are part of every larger one (as the
paper's S-GSD-1x/5x/10x/20x grow). A data set given as "" is a procedural stand-in generated under
OUT/data/ (`glassgem synth procedural`, resumable): there is no Stable Diffusion here, and results.md says so.
Stand-ins are composited on `data.backgrounds` (a folder of photos; default scikit-image's samples), and a
pretraining stand-in has a `budget.standin_glass_free` fraction of plain glass-free photos. 1x is
`budget.scale_base` images (default |real train|). `data.glass_free` (glass-free photos: a folder of
images/ + masks/, or a `glassgem data photos` folder, whose heldout/ split is taken) is scored for false glass.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..synth.procedural.backgrounds import folder_backgrounds
from ..synth.procedural.pipeline import synthesize
from ..train.runner import TEST_SPLITS, TRAIN_SPLITS, VAL_SPLITS, DataSpec, default_split, load_pairs
from .plan import Budget, Plan

REAL = "real"


@dataclass
class ExperimentData:
    """Resolved pairs: `sets[key]` (training pairs of each data set), `eval` and what stands in for what."""

    sets: dict[str, list] = field(default_factory=dict)
    eval: list = field(default_factory=list)
    eval_name: str = ""
    standins: list[str] = field(default_factory=list)  # data keys that are procedural stand-ins
    described: dict[str, str] = field(default_factory=dict)
    glass_free: list = field(default_factory=list)  # glass-free photos scored for false glass (data.glass_free)
    glass_free_name: str = ""
    scale_base: int = 0  # images in 1x (0: |real train|)

    def base(self) -> int:
        return self.scale_base or len(self.sets[REAL])

    def scaled(self, key: str, scale: float) -> list:
        """The first scale x base() pairs of data set `key` (all of them for the real set)."""
        pairs = self.sets[key]
        if key == REAL or scale <= 0:
            return pairs
        n = max(1, int(round(scale * self.base())))
        if n > len(pairs):
            what = "images (budget.scale_base)" if self.scale_base else "real training images"
            raise ConfigError(
                f"data set {key!r} has {len(pairs)} images; scale {scale:g} needs {n} "
                f"({scale:g} x {self.base()} {what})"
            )
        return pairs[:n]


def _seed(key: str) -> int:
    return zlib.crc32(key.encode()) % 10_000  # a stand-in's scenes depend only on its name


def _generate(
    out: Path, n: int, seed: int, budget: Budget, progress: bool, backgrounds=None, glass_free: float = 0.0
) -> list:
    if progress:
        print(
            f"generating {n} procedural scenes in {out} ({budget.standin_size[0]}x{budget.standin_size[1]}"
            + (f", {glass_free:g} of them glass-free photos" if glass_free else "")
            + ")"
        )
    synthesize(
        out,
        n=n,
        seed=seed,
        size=budget.standin_size,
        workers=budget.synth_workers,
        progress=progress,
        backgrounds=backgrounds,
        glass_free=glass_free,
    )
    return load_pairs(DataSpec(root=str(out)), progress=False)


def _glass_free_photos(root: str, progress: bool) -> tuple[list, str]:
    """data.glass_free: its heldout/ (a `glassgem data photos` folder), test or val split, else the folder."""
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: data.glass_free folder not found")
    if (Path(root) / "heldout" / "images").is_dir():  # a `glassgem data photos` corpus: its held-out sources
        root = str(Path(root) / "heldout")
    split = default_split(root, TEST_SPLITS + VAL_SPLITS)
    if split is None and default_split(root, TRAIN_SPLITS):
        raise ConfigError(
            f"{root}: data.glass_free has a train split but no heldout/test/val one; give that "
            "folder itself (never photos that are trained on)"
        )
    spec = DataSpec(root=root, split=split)
    pairs = load_pairs(spec, progress=progress)
    return pairs, f"{spec.describe()}, {len(pairs)} glass-free photos"


def _seeded_order(pairs: list, key: str) -> list:
    order = np.random.default_rng([_seed(key), 21]).permutation(len(pairs))
    return [pairs[i] for i in order]


def _given(root: str, wanted: tuple[str, ...], progress: bool) -> tuple[list, str]:
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: data folder not found")
    split = default_split(root, wanted)
    spec = DataSpec(root=root, split=split)
    return load_pairs(spec, progress=progress), spec.describe()


def needed_sizes(plan: Plan) -> dict[str, float]:
    """The largest scale each pretraining data set is used at."""
    out: dict[str, float] = {}
    for run in plan.runs:
        if run.pretrain and run.pretrain != REAL:
            out[run.pretrain] = max(out.get(run.pretrain, 0.0), run.scale if run.scale > 0 else 1.0)
    return out


def missing_sets(plan: Plan, folders: dict[str, str]) -> set[str]:
    """Data sets the runs use that are neither given nor generated."""
    used = {r.pretrain for r in plan.runs} | {r.finetune for r in plan.runs}
    return {k for k in used if k and not folders.get(k) and k not in plan.standins}


def prepare_data(
    plan: Plan, folders: dict[str, str], budget: Budget, out: Path, progress: bool = True, runs: list | None = None
) -> ExperimentData:
    """Check or generate every data set `runs` (default: the plan's) use, before any training starts."""
    data = ExperimentData(scale_base=int(budget.scale_base))
    runs = plan.runs if runs is None else runs
    used = {r.pretrain for r in runs if r.pretrain} | {r.finetune for r in runs if r.finetune} | {REAL}
    bgs = folder_backgrounds(folders["backgrounds"]) if folders.get("backgrounds") else None  # checked now
    if folders.get("glass_free"):
        data.glass_free, data.glass_free_name = _glass_free_photos(folders["glass_free"], progress)
    real_dir = folders.get(REAL, "")
    if real_dir:
        data.sets[REAL], data.described[REAL] = _given(real_dir, TRAIN_SPLITS, progress)
    else:
        data.sets[REAL] = _generate(out / "data" / REAL, budget.standin_real, _seed(REAL), budget, progress, bgs)
        data.standins.append(REAL)
        data.described[REAL] = f"procedural stand-in, {budget.standin_real} scenes"
    eval_dir = folders.get("eval", "")
    if eval_dir or real_dir:
        root = eval_dir or real_dir
        split = default_split(root, TEST_SPLITS) or default_split(root, VAL_SPLITS)
        if split is None and default_split(root, TRAIN_SPLITS):
            raise ConfigError(f"{root}: no test or val split to score on; give data.eval=DIR")
        spec = DataSpec(root=root, split=split)
        data.eval, data.eval_name = load_pairs(spec, progress=progress), spec.describe()
    else:
        data.eval = _generate(out / "data" / "eval", budget.standin_eval, _seed("eval"), budget, progress, bgs)
        data.eval_name = f"procedural stand-in, {budget.standin_eval} scenes (not a real test set)"
        data.standins.append("eval")
    sizes = needed_sizes(plan)
    for key in sorted(used - {REAL}):
        given = folders.get(key, "")
        if given:
            pairs, data.described[key] = _given(given, TRAIN_SPLITS, progress)
            data.sets[key] = _seeded_order(pairs, key)
        else:
            n = int(math.ceil(sizes.get(key, 1.0) * data.base()))
            data.sets[key] = _generate(
                out / "data" / key, n, _seed(key), budget, progress, bgs, budget.standin_glass_free
            )
            data.standins.append(key)
            data.described[key] = (
                f"procedural stand-in, {n} scenes"
                + (f" ({budget.standin_glass_free:g} of them glass-free photos)" if budget.standin_glass_free else "")
                + (f" on {folders['backgrounds']}" if bgs is not None else "")
            )
    for key, scale in sizes.items():
        if key in data.sets:
            data.scaled(key, scale)  # too small a given set fails now
    return data


def data_sets_line(data: ExperimentData) -> str:
    parts = [f"{k}: {v}" for k, v in data.described.items()] + [f"eval: {data.eval_name}"]
    return "; ".join(parts + ([f"glass-free: {data.glass_free_name}"] if data.glass_free_name else []))


__all__ = ["REAL", "ExperimentData", "data_sets_line", "missing_sets", "needed_sizes", "prepare_data"]
