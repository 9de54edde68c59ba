"""Run a plan: every run's stages one after another, each resumable, each model scored on the eval set.

OUT/
  experiment.json          plan, budget and --set of this folder (a rerun must match: it continues)
  data/                    procedural stand-ins (when a data set is not given)
  runs/NAME/pretrain/      a `glassgem train` run folder (checkpoints/, final/, log.csv)
  runs/NAME/finetune/      the same, started from pretrain/final
  runs/NAME/PARADIGM.json  the eval-set metrics of that stage's final model (+ false glass on data.glass_free)
  results.csv, results.md, results.png
  .glassgem.lock           while a process runs the plan here (glassgem.locks): a second one is refused
Run names are plain folder names (no '/', '..'), and nothing is written outside OUT.
A finished stage (final/ written) or score (PARADIGM.json written) is skipped; an interrupted stage resumes
from its last checkpoint, so running the same command again continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_model
from ..evaluation.report import PerImageReport
from ..hub.pretrained import from_pretrained
from ..inference.threads import cpu_cores
from ..io import atomic_write_text
from ..locks import folder_lock
from ..outputs import check_inside, check_not_input, plain_name
from ..train.checkpoint import list_checkpoints
from ..train.encoder_init import check_encoder_init
from ..train.engine import RunData, Trainer
from ..train.optim import scaled_lr_steps
from .datasets import ExperimentData, data_sets_line, missing_sets, prepare_data
from .plan import Budget, Plan, RunSpec, split_overrides, stage_config
from .results import write_results

STATE_NAME = "experiment.json"


def _stage_cfg(cfg: TrainConfig, budget: Budget, stage: str, init_from: str = "") -> TrainConfig:
    epochs = getattr(budget, f"{stage}_epochs")
    cfg = dataclasses.replace(cfg, init_from=init_from or cfg.init_from)
    if epochs > 0:
        return dataclasses.replace(cfg, epochs=float(epochs))
    steps = int(getattr(budget, f"{stage}_steps"))
    if steps < 1:
        raise ConfigError(f"budget {budget.name}: give {stage}_epochs or {stage}_steps")
    # the preset's lr decay steps keep their relative positions in the shorter run
    return dataclasses.replace(cfg, epochs=0.0, max_iter=steps, lr_steps=scaled_lr_steps(cfg, steps))


def _train(cfg: TrainConfig, pairs: list, run_dir: Path, progress: bool) -> Path:
    final = run_dir / "final"
    if (final / "config.json").is_file():
        return final
    started = bool(list_checkpoints(run_dir))  # an interrupted stage resumes; a new one starts
    Trainer(cfg, RunData(list(pairs), None), run_dir, progress=progress).train(resume=started)
    if not (final / "config.json").is_file():
        raise ConfigError(f"{run_dir}: training stopped before its last step; run the command again to resume")
    return final


def _score(
    model_dir: Path, cfg: TrainConfig, data: ExperimentData, budget: Budget, path: Path, progress: bool
) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    model = from_pretrained(model_dir)
    metrics = evaluate_model(
        model,
        data.eval,
        size=cfg.eval_size,
        batch_size=budget.eval_batch,
        num_workers=min(cfg.num_workers, 2),
        progress=progress,
    )
    if data.glass_free:  # false glass: the fraction of each glass-free photo predicted as glass
        report = PerImageReport(worst=0)
        evaluate_model(
            model,
            data.glass_free,
            size=cfg.eval_size,
            batch_size=budget.eval_batch,
            num_workers=min(cfg.num_workers, 2),
            progress=progress,
            report=report,
        )
        fg = report.false_glass()
        metrics.update(false_glass=fg["false_glass"], clean=fg["clean"], n_glass_free=fg["n"])
    metrics["model"] = str(model_dir)
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return metrics


def execute_run(
    run: RunSpec, cfg: TrainConfig, budget: Budget, data: ExperimentData, out: Path, progress: bool = True
) -> dict[str, dict]:
    """Train and score one run; {paradigm: metrics}."""
    run_dir = out / "runs" / plain_name(run.name, "plan run name")
    check_inside(run_dir / STATE_NAME, out, "--out")  # no symbolic link out of OUT on the way either
    run_dir.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict] = {}
    init = ""
    if run.pretrain:
        pairs = data.scaled(run.pretrain, run.scale)
        pcfg = _stage_cfg(cfg, budget, "pretrain")
        print(f"  pretrain on {run.pretrain} x{run.scale:g} ({len(pairs)} images)")
        final = _train(pcfg, pairs, run_dir / "pretrain", progress)
        scores["zero-shot"] = _score(final, pcfg, data, budget, run_dir / "zero-shot.json", progress)
        init = str(final)
    if run.finetune:
        pairs = data.scaled(run.finetune, 1.0)
        fcfg = _stage_cfg(cfg, budget, "finetune", init)
        paradigm = "fine-tuned" if run.pretrain else "trained"
        print(f"  {'fine-tune' if init else 'train'} on {run.finetune} ({len(pairs)} images)")
        final = _train(fcfg, pairs, run_dir / "finetune", progress)
        scores[paradigm] = _score(final, fcfg, data, budget, run_dir / f"{paradigm}.json", progress)
    return scores


def _check_state(out: Path, state: dict[str, Any]) -> None:
    path = out / STATE_NAME
    if path.is_file():
        before = json.loads(path.read_text())
        if {k: before.get(k) for k in state} != state:
            raise ConfigError(
                f"{out} holds plan {before.get('plan')} at budget {before.get('budget')} with "
                f"--set {' '.join(before.get('set', [])) or '(none)'}; continue it with the same "
                "settings or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def preflight(
    plan: Plan, budget: Budget, config_sets: list[str], folders: dict[str, str]
) -> tuple[dict[str, TrainConfig], dict[str, str]]:
    """Every run's config, checked before any data is made or trained on: (configs, skipped run -> why)."""
    configs: dict[str, TrainConfig] = {}
    skipped: dict[str, str] = {}
    missing = missing_sets(plan, folders)
    for run in plan.runs:
        cfg = stage_config(plan, budget, run, config_sets, folders)
        try:
            for key in (run.pretrain, run.finetune):
                if key in missing:
                    raise ConfigError(f"needs data.{key}=DIR (no stand-in for it)")
            check_encoder_init(cfg)
            _stage_cfg(cfg, budget, "pretrain" if run.pretrain else "finetune")
        except ConfigError as e:
            if not run.optional:
                raise ConfigError(f"{plan.name}: run {run.name}: {e}") from None
            skipped[run.name] = str(e)
            continue
        configs[run.name] = cfg
    return configs, skipped


def run_plan(
    plan: Plan,
    out: str | Path,
    budget_name: str = "smoke",
    sets: list[str] | None = None,
    only: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """Run (or continue) every run of `plan` into OUT and write the results; returns results.csv."""
    out = Path(out)
    sets = list(sets or [])
    ov = split_overrides(plan, sets)
    budget = plan.budget(budget_name, ov.budget)
    for key in ("threads", "synth_workers"):
        if not 0 <= getattr(budget, key) <= cpu_cores():
            raise ConfigError(
                f"budget.{key}={getattr(budget, key)}: expected 0 to {cpu_cores()} (the CPUs this process may use)"
            )
    names = [r.name for r in plan.runs]
    for name in only or []:
        if name not in names:
            raise ConfigError(f"--only {name}: plan {plan.name} has no such run (it has {', '.join(names)})")
    folders = {**plan.data, **ov.data}
    configs, skipped = preflight(plan, budget, ov.config, folders)
    check_not_input(out, [], "--out", roots=[f for f in folders.values() if f])  # never a data set's folder
    with folder_lock(out):
        return _run_locked(plan, out, budget, sets, only, folders, configs, skipped, progress)


def _run_locked(
    plan: Plan,
    out: Path,
    budget: Budget,
    sets: list[str],
    only: list[str] | None,
    folders: dict[str, str],
    configs: dict[str, TrainConfig],
    skipped: dict[str, str],
    progress: bool,
) -> Path:
    """run_plan, holding the lock of OUT (a second `experiment run` on it is refused)."""
    _check_state(out, {"plan": plan.name, "budget": budget.name, "set": sets})
    todo = [r for r in plan.runs if not only or r.name in only]
    data = prepare_data(plan, folders, budget, out, progress, [r for r in todo if r.name not in skipped])
    print(f"{plan.name} at budget {budget.name}: {data_sets_line(data)}")
    threads = torch.get_num_threads()
    if budget.threads > 0:
        torch.set_num_threads(budget.threads)
    try:
        return _run_all(plan, budget, data, out, todo, configs, skipped, progress)
    finally:
        torch.set_num_threads(threads)


def _run_all(
    plan: Plan,
    budget: Budget,
    data: ExperimentData,
    out: Path,
    todo: list[RunSpec],
    configs: dict[str, TrainConfig],
    skipped: dict[str, str],
    progress: bool,
) -> Path:
    start = time.perf_counter()
    for i, run in enumerate(todo, 1):
        if run.name in skipped:
            print(f"[{i}/{len(todo)}] {run.name}: skipped ({skipped[run.name]})")
            continue
        print(f"[{i}/{len(todo)}] {run.name} ({time.perf_counter() - start:.0f} s so far)")
        execute_run(run, configs[run.name], budget, data, out, progress)
        write_results(plan, budget, data, out, skipped)
    paths = write_results(plan, budget, data, out, skipped)
    print(f"done in {time.perf_counter() - start:.0f} s: {', '.join(str(p) for p in paths)}")
    return paths[0]


def print_commands(plan_arg: str, plan: Plan, out: str, budget_name: str, sets: list[str]) -> list[str]:
    """One command per run (e.g. one cluster job each) and a last one that collects the results."""
    split_overrides(plan, sets)
    plan.budget(budget_name)
    base = ["glassgem", "experiment", "run", plan_arg, "--out", out, "--budget", budget_name]
    if sets:
        base += ["--set", *sets]
    lines = [shlex.join(base + ["--only", r.name]) for r in plan.runs]
    lines.append(shlex.join(base) + "  # after the others: collects results.csv/.md/.png (finished runs skip)")
    return lines


__all__ = ["STATE_NAME", "execute_run", "preflight", "print_commands", "run_plan"]
