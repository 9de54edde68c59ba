"""Experiment plans: the paper's tables as TOML files (experiments/plans/*.toml) and the budgets they run at.

A plan names its data sets (`[data]`: key = folder, "" = a procedural stand-in the runner generates) and its
runs (`[[runs]]`). Every plan also takes two optional folders (AUX_DATA): `data.backgrounds` (photos the
procedural stand-ins are composited on; default scikit-image's samples) and `data.glass_free` (glass-free
photos every stage's model is also scored on: false glass). A run pretrains on one data set (optional;
`scale` = multiples of the real training set), fine-tunes on another (optional), with its own `set = [...]`
config overrides; each stage's model is scored on the plan's eval set: after pretraining "zero-shot", after
pretraining + fine-tuning "fine-tuned", after fine-tuning alone "trained". `paper = {zero_shot = ..,
fine_tuned = ..}` carries the paper's numbers.

Budgets (how long each stage trains) are `paper` (the paper's epochs and the preset's batch), `cpu` (a few
CPU hours) and `smoke` (a few steps of the `debug` preset, for tests); a plan's `[budgets.NAME]` table
changes any of their fields.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import TrainConfig, apply_overrides, train_preset
from ..errors import ConfigError
from ..outputs import plain_name

PARADIGMS = ("zero-shot", "fine-tuned", "trained")
AUX_DATA = ("backgrounds", "glass_free")  # data keys every plan accepts; never a run's data set
LAYOUTS = ("scale", "rows")


@dataclass
class Budget:
    name: str
    preset: str = ""  # "" = the plan's `model`
    pretrain_epochs: float = 0.0  # > 0: epochs of the (scaled) pretraining set; else pretrain_steps
    pretrain_steps: int = 0
    finetune_epochs: float = 0.0
    finetune_steps: int = 0
    set: list[str] = field(default_factory=list)  # config overrides applied to every stage
    # Procedural stand-ins for data sets the user does not give
    standin_size: tuple[int, int] = (512, 384)  # W x H of generated scenes
    standin_real: int = 3911  # "real" training scenes (GSD-S train has 3,911)
    standin_eval: int = 608  # eval scenes (GSD-S test has 608)
    # A fraction of every procedural *pretraining* set that is plain glass-free photos (the backgrounds,
    # augmented; mask all zero), on top of the generator's ~7% glass-free decoy scenes: ~25% negatives in
    # all, the share docs/glass-free.md suggests after a ~47% one cost val IoU; 0 = none
    standin_glass_free: float = 0.2
    synth_workers: int = 1
    # 1x of a pretraining set = this many images (0: |real train|), e.g. 572 when data.real also holds
    # glass-free photos that are not the real glass training set
    scale_base: int = 0
    eval_batch: int = 4
    threads: int = 0  # torch CPU threads (0: torch's default); tiny models run faster on one
    about: str = ""  # one line on what the budget costs / shows


BUDGETS: dict[str, Budget] = {
    "paper": Budget(
        "paper",
        pretrain_epochs=160,
        finetune_epochs=80,
        about="the paper's schedule: 160 pretraining + 80 fine-tuning epochs at the preset's batch (GPU days)",
    ),
    "cpu": Budget(
        "cpu",
        preset="gem-lite",
        pretrain_steps=400,
        finetune_steps=200,
        standin_size=(384, 288),
        standin_real=572,
        standin_eval=99,
        synth_workers=1,
        set=[
            "batch_size=8",
            "crop_size=256",
            "min_sizes=[256,288,320,352,384]",
            "num_points=2048",
            "model.image_size=256",
            "eval_size=256",
            "checkpoint_period=100",
            "log_period=20",
            "num_workers=1",
        ],
        about="GEM-Lite (ImageNet encoder), 400 pretraining + 200 fine-tuning steps of 8 crops at 256 px, "
        "scored at 256 px: a few CPU hours per plan, a plumbing-and-trend check, not the paper's numbers",
    ),
    "smoke": Budget(
        "smoke",
        preset="debug",
        pretrain_steps=2,
        finetune_steps=2,
        standin_size=(64, 48),
        standin_real=4,
        standin_eval=4,
        eval_batch=8,
        threads=1,
        set=[
            "batch_size=2",
            "crop_size=64",
            "min_sizes=[64,80]",
            "max_size=128",
            "num_points=256",
            "model.image_size=64",
            "eval_size=64",
            "checkpoint_period=100",
            "log_period=1",
        ],
        about="a few steps of the debug model on tiny scenes: checks a plan end to end, numbers mean nothing",
    ),
}


@dataclass
class RunSpec:
    name: str
    label: str = ""  # the row label in results.md (default: name)
    pretrain: str = ""  # data key to pretrain on ("" = no pretraining)
    scale: float = 1.0  # pretraining set = scale x the real training set's size; 0 = all of it
    finetune: str = ""  # data key to fine-tune on ("" = none)
    set: list[str] = field(default_factory=list)
    paper: dict[str, float] = field(default_factory=dict)  # paradigm (zero_shot / fine_tuned / trained) -> IoU
    # optional: a run whose config cannot be built here (encoder weights not given, an encoder with no
    # pretrained weights) is skipped and the results say why; a required run stops the plan before training
    optional: bool = False

    def paradigms(self) -> list[str]:
        out = ["zero-shot"] if self.pretrain else []
        if self.finetune:
            out.append("fine-tuned" if self.pretrain else "trained")
        return out


@dataclass
class Plan:
    name: str
    title: str
    source: str  # where the paper's numbers come from
    layout: str  # "scale": rows by scale, plot IoU vs scale; "rows": one row per run
    model: str  # preset of the paper budget
    data: dict[str, str]
    runs: list[RunSpec]
    notes: list[str] = field(default_factory=list)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-plan budget changes
    # data sets that may be generated procedurally when not given; runs on any other missing set are
    # skipped if optional (else the plan stops before training)
    standins: list[str] = field(default_factory=lambda: ["real", "synthetic", "eval"])
    path: str = ""

    def budget(self, name: str, overrides: dict[str, Any] | None = None) -> Budget:
        if name not in BUDGETS:
            raise ConfigError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}")
        b = dataclasses.replace(BUDGETS[name], set=list(BUDGETS[name].set))
        for key, value in {**self.budgets.get(name, {}), **(overrides or {})}.items():
            b = _set_field(b, key, value, f"budget {name}")
        if not b.preset:
            b.preset = self.model
        return b


def _set_field(obj: Any, key: str, value: Any, where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    if key not in names or key == "name":
        raise ConfigError(f"{where}: unknown field {key!r} (known: {', '.join(n for n in names if n != 'name')})")
    current = getattr(obj, key)
    try:
        if isinstance(current, tuple):
            value = tuple(int(v) for v in value)
        elif isinstance(current, list):
            value = [str(v) for v in value]
        elif isinstance(current, bool):
            value = bool(value)
        elif isinstance(current, (int, float, str)):
            value = type(current)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: bad value {value!r} for {key!r}") from None
    return dataclasses.replace(obj, **{key: value})


# ------------------------------------------------------------------------------------ reading
def _plans_dir():
    return resources.files("glassgem.experiments") / "plans"


def list_plans() -> list[tuple[str, str]]:
    """(name, title) of every shipped plan."""
    out = []
    for entry in sorted(_plans_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            plan = parse_plan(entry.read_text(), entry.name)
            out.append((plan.name, plan.title))
    return out


def load_plan(name_or_path: str) -> Plan:
    """A shipped plan by name (`table3`) or a PLAN.toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: plan file not found")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}); a plan is TOML text") from None
        return parse_plan(text, str(path))
    entry = _plans_dir() / f"{name_or_path}.toml"
    if not entry.is_file():
        names = ", ".join(n for n, _ in list_plans())
        raise ConfigError(f"unknown plan {name_or_path!r}; choose one of {names} or give a PLAN.toml file")
    return parse_plan(entry.read_text(), f"{name_or_path}.toml")


def parse_plan(text: str, where: str) -> Plan:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML ({e})") from None
    known = {"name", "title", "source", "layout", "model", "data", "runs", "notes", "budgets", "standins"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown plan keys: {', '.join(unknown)}")
    for key in ("name", "runs"):
        if key not in raw:
            raise ConfigError(f"{where}: the plan has no {key!r}")
    data = raw.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{where}: [data] must map names to folder strings")
    runs = []
    for i, r in enumerate(raw["runs"]):
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: runs must be [[runs]] tables, got {r!r}")
        try:
            run = RunSpec(**r)
        except TypeError as e:
            raise ConfigError(f"{where}: run {i + 1}: {e}") from None
        _check_run(run, f"{where}: run {i + 1}")
        for stage in (run.pretrain, run.finetune):
            if stage in AUX_DATA:
                raise ConfigError(f"{where}: run {run.name!r}: data.{stage} is not a training set")
            if stage and stage not in data:
                raise ConfigError(f"{where}: run {run.name!r} uses data set {stage!r}, which [data] does not name")
        if not run.paradigms():
            raise ConfigError(f"{where}: run {run.name!r} neither pretrains nor fine-tunes")
        bad = sorted(set(run.paper) - {p.replace("-", "_") for p in PARADIGMS})
        if bad:
            raise ConfigError(f"{where}: run {run.name!r}: paper keys must be zero_shot, fine_tuned or trained")
        run.label = run.label or run.name
        runs.append(run)
    names = [r.name for r in runs]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"{where}: run names must be unique and there must be at least one run")
    layout = raw.get("layout", "rows")
    if layout not in LAYOUTS:
        raise ConfigError(f"{where}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    budgets = raw.get("budgets", {})
    for b in budgets:
        if b not in BUDGETS:
            raise ConfigError(f"{where}: [budgets.{b}]: unknown budget; choose one of {', '.join(BUDGETS)}")
    plan = Plan(
        name=str(raw["name"]),
        title=str(raw.get("title", raw["name"])),
        source=str(raw.get("source", "")),
        layout=layout,
        model=str(raw.get("model", "gem-tiny")),
        data=dict(data),
        runs=runs,
        notes=[str(n) for n in raw.get("notes", [])],
        budgets=budgets,
        path=where,
        standins=[str(k) for k in raw.get("standins", ["real", "synthetic", "eval"])],
    )
    for b in budgets:
        plan.budget(b)  # unknown fields fail now, not after hours
    return plan


def _check_run(run: RunSpec, where: str) -> None:
    """Every field of a [[runs]] table has its type (TOML gives whatever was written); the name is a folder."""
    plain_name(run.name, f"{where}: name")
    for key in ("label", "pretrain", "finetune"):
        if not isinstance(getattr(run, key), str):
            raise ConfigError(f"{where} ({run.name}): {key} = {getattr(run, key)!r}: expected a string")
    scale = run.scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ConfigError(
            f"{where} ({run.name}): scale = {scale!r}: expected a number >= 0 (multiples of the real "
            "training set; 0 = all of the pretraining set)"
        )
    if not isinstance(run.set, list) or not all(isinstance(s, str) for s in run.set):
        raise ConfigError(f'{where} ({run.name}): set = {run.set!r}: expected a list of "key=value" strings')
    if not isinstance(run.paper, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in run.paper.values()
    ):
        raise ConfigError(f"{where} ({run.name}): paper = {run.paper!r}: expected a table of IoU numbers")
    if not isinstance(run.optional, bool):
        raise ConfigError(f"{where} ({run.name}): optional = {run.optional!r}: expected true or false")


# ------------------------------------------------------------------------------------ --set
@dataclass
class Overrides:
    data: dict[str, str] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    config: list[str] = field(default_factory=list)


def split_overrides(plan: Plan, items: list[str]) -> Overrides:
    """`data.KEY=DIR` (a data set of the plan), `budget.FIELD=VALUE`, anything else a training config field."""
    out = Overrides()
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        if key.startswith("data."):
            name = key[5:]
            if name not in plan.data and name not in AUX_DATA:
                raise ConfigError(
                    f"--set {key}: plan {plan.name} has no data set {name!r} "
                    f"(it has {', '.join(list(plan.data) + list(AUX_DATA))})"
                )
            out.data[name] = value
        elif key.startswith("budget."):
            name = key[7:]
            if name in ("set",):
                raise ConfigError("--set budget.set: give config fields directly, e.g. --set lr=1e-4")
            current = getattr(BUDGETS["smoke"], name, None)
            out.budget[name] = value.replace("x", ",").split(",") if isinstance(current, tuple) else value
        else:
            out.config.append(item)
    return out


def _fill(item: str, data: dict[str, str]) -> str:
    """`{data.KEY}` in a run's override -> that data entry (e.g. encoder_weights={data.sam_weights})."""
    for key, value in data.items():
        item = item.replace(f"{{data.{key}}}", value)
    return item


def stage_config(
    plan: Plan, budget: Budget, run: RunSpec, extra: list[str], data: dict[str, str] | None = None
) -> TrainConfig:
    """The training config of a run's stages: preset, budget, the run's own switches, then --set."""
    cfg = train_preset(budget.preset)
    own = [_fill(i, data if data is not None else plan.data) for i in run.set]
    for source, items in (("budget", budget.set), (f"run {run.name}", own), ("--set", extra)):
        try:
            cfg = apply_overrides(cfg, items)
        except ConfigError as e:
            raise ConfigError(f"{plan.name}: {source}: {e}") from None
    return cfg


__all__ = [
    "AUX_DATA",
    "BUDGETS",
    "PARADIGMS",
    "Budget",
    "Overrides",
    "Plan",
    "RunSpec",
    "list_plans",
    "load_plan",
    "parse_plan",
    "split_overrides",
    "stage_config",
]
