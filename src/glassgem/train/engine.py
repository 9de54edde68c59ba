"""The training loop: Accelerate, exact resume, periodic validation, best-checkpoint selection.

Run layout (`--out RUN_DIR`):
  config.json            the resolved TrainConfig
  checkpoints/step_*.pt  full training state (model, optimiser, scheduler, scaler, RNG, step), last K kept
  best/                  glassgem model dir of the best validation IoU (+ best.json with its metrics)
  final/                 glassgem model dir after the last step
  log.csv, tb/           per-log-period losses, lr, throughput (CSV and TensorBoard)
  val.csv                validation metrics per evaluation
  .glassgem.lock         while a process trains into the folder (glassgem.locks): a second one is refused

Determinism: the data order is a per-epoch permutation drawn from (seed, epoch); each sample's
augmentation from (seed, epoch, index); each micro-step re-seeds torch from (seed, step, micro, rank).
So a run resumed from any checkpoint replays exactly the steps an uninterrupted run would take.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import TrainConfig
from ..data.datasets import GlassDataset, Pair
from ..data.transforms import TrainTransform, collate
from ..errors import CheckpointError, ConfigError
from ..evaluation.evaluate import evaluate_model
from ..hub.pretrained import load_checked, read_pretrained, save_pretrained
from ..inference.threads import loader_workers
from ..io import atomic_write_text
from ..locks import folder_lock
from ..model.gem import GEM
from .checkpoint import (
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temps,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .encoder_init import init_encoder
from .losses import GEMCriterion
from .optim import build_optimizer, build_scheduler, freeze_encoder, hold_encoder_batchnorm
from .runlog import RunLogger
from .targets import targets_from_batch


# ------------------------------------------------------------------------------------ data order
class _SeededSamples(Dataset):
    """Wraps a GlassDataset so that item (epoch, index) is augmented with rng (seed, epoch, index)."""

    def __init__(self, dataset: GlassDataset, transform: TrainTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        sample = self.dataset.load(index)
        return self.transform(sample, np.random.default_rng([self.seed, epoch, index]))


class _StepBatches(Sampler):
    """Yields this process's micro-batches of (epoch, index) keys from optimiser step `start` on.

    The global sample stream is the concatenation of per-epoch permutations; global step s consumes
    positions [s*B, (s+1)*B). Within a step, micro-batch m of rank r takes its consecutive slice.
    """

    def __init__(self, n: int, seed: int, batch: int, accum: int, world: int, rank: int, start: int, max_iter: int):
        self.n, self.seed, self.batch, self.accum = n, seed, batch, accum
        self.world, self.rank, self.start, self.max_iter = world, rank, start, max_iter
        self.micro = batch // (accum * world)
        self._perm: dict[int, np.ndarray] = {}

    def _key(self, pos: int) -> tuple[int, int]:
        epoch = pos // self.n
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return epoch, int(self._perm[epoch][pos % self.n])

    def __len__(self) -> int:
        return (self.max_iter - self.start) * self.accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.max_iter):
            for m in range(self.accum):
                first = step * self.batch + (m * self.world + self.rank) * self.micro
                yield [self._key(p) for p in range(first, first + self.micro)]


def step_seed(seed: int, step: int, a: int, b: int) -> int:
    """A 62-bit seed that depends only on its four arguments (negative values allowed)."""
    return int(np.random.default_rng([seed, step, a % 2**32, b % 2**32]).integers(2**62))


# ------------------------------------------------------------------------------------ the run
def _plain(value: Any) -> Any:
    """Config values as JSON gives them back (tuples as lists), for comparing a saved config with ours."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@dataclass
class RunData:
    train: list[Pair]
    val: list[Pair] | None = None


def resolve_max_iter(cfg: TrainConfig, n_train: int) -> int:
    if cfg.epochs > 0:
        return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))
    return cfg.max_iter


def check_batch(cfg: TrainConfig, world: int) -> int:
    per = cfg.batch_size // (cfg.grad_accum * world)
    if per < 1 or per * cfg.grad_accum * world != cfg.batch_size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be a multiple of grad_accum {cfg.grad_accum} x processes {world}"
        )
    return per


def build_model(cfg: TrainConfig) -> GEM:
    """GEM with the encoder initialised as cfg.encoder_init says, then optionally cfg.init_from."""
    encoder = init_encoder(cfg)
    model = GEM(cfg.model, encoder=encoder)
    if cfg.init_from:
        # Pretrain -> fine-tune: every weight of the source that fits this model is taken (read only,
        # no second model built); weights the source lacks keep their initialisation (warned about).
        _, source_sd, _ = read_pretrained(cfg.init_from)
        load_checked(model, source_sd, cfg.init_from, strict=False)
    if cfg.freeze_encoder:
        freeze_encoder(model)
    elif cfg.freeze_encoder_layers > 0:
        freeze_encoder(model, below=cfg.freeze_encoder_layers)
    return model


def build_criterion(cfg: TrainConfig):
    return GEMCriterion.from_train_config(cfg)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: RunData,
        out_dir: str | Path,
        progress: bool = True,
        stop_after: int | None = None,
    ) -> None:
        from accelerate import Accelerator

        self.cfg, self.data, self.out = cfg, data, Path(out_dir)
        self.progress = progress
        self.stop_after = stop_after  # for tests and time-boxed runs: return after this many steps
        self.acc = Accelerator(mixed_precision=cfg.mixed_precision)
        self.micro = check_batch(cfg, self.acc.num_processes)
        self.max_iter = resolve_max_iter(cfg, len(data.train))
        torch.manual_seed(cfg.seed)  # model init is identical on every process
        model = build_model(cfg)
        self.criterion = build_criterion(cfg).to(self.acc.device)  # its class weights are a buffer
        optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(optimizer, cfg, self.max_iter)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.step = 0
        self.best_iou = -1.0

    # -------------------------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        scaler = self.acc.scaler.state_dict() if self.acc.scaler is not None else {}
        return {
            "step": self.step,
            "model": self.acc.unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler,
            "rng": rng_state(),
            "best_iou": self.best_iou,
            "config": self.cfg.to_dict(),
        }

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        saved = state.get("config", {}).get("model") if isinstance(state.get("config"), dict) else None
        if isinstance(saved, dict):
            ours = self.cfg.model.to_dict()
            differ = [
                k
                for k in sorted(set(saved) | set(ours))
                if k != "score_smoothing" and _plain(saved.get(k)) != _plain(ours.get(k))
            ]
            if differ:
                shown = ", ".join(f"model.{k} {saved.get(k)!r} vs {ours.get(k)!r}" for k in differ[:4])
                raise ConfigError(
                    f"{path}: this run's checkpoint is of another model than the one asked for "
                    f"({shown}); resume without changing the model (or --preset), or start a "
                    "new run in another --out"
                )
        try:
            self.acc.unwrap_model(self.model).load_state_dict(state["model"])
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
            raise CheckpointError(
                f"{path}: its weights do not fit this run's {self.cfg.model.name} model ({first[0].strip()})"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.acc.scaler is not None and state["scaler"]:
            self.acc.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.step, self.best_iou = int(state["step"]), float(state["best_iou"])

    def _resume(self) -> None:
        """Restore the newest checkpoint that reads; a corrupt one (a kill or a full disk while it was written
        by something other than glassgem's atomic writes, a damaged disk) is reported and the one before it
        taken. No checkpoint at all is an error: `--resume` never silently starts over."""
        found = list_checkpoints(self.out)
        if not found:
            raise ConfigError(
                f"--resume: {checkpoint_dir(self.out)} holds no checkpoint (step_*.pt) to resume "
                "from; leave out --resume to start a new run"
            )
        for i, (_, path) in enumerate(reversed(found)):
            try:
                self._restore(path)
                return
            except CheckpointError as e:
                if i == len(found) - 1 or "do not fit" in str(e):
                    raise
                print(f"warning: {e}; resuming from the checkpoint before it", file=sys.stderr)

    def save(self) -> None:
        if self.acc.is_main_process:
            save_checkpoint(self.out, self.step, self._state(), self.cfg.keep_last)
        self.acc.wait_for_everyone()

    # -------------------------------------------------------------------------------- loop
    def _loader(self) -> DataLoader:
        cfg = self.cfg
        dataset = GlassDataset(self.data.train)
        transform = TrainTransform(cfg.crop_size, cfg.min_sizes, cfg.max_size, resize_mode=cfg.resize_mode)
        sampler = _StepBatches(
            len(dataset),
            cfg.seed,
            cfg.batch_size,
            cfg.grad_accum,
            self.acc.num_processes,
            self.acc.process_index,
            self.step,
            self.max_iter,
        )
        return DataLoader(
            _SeededSamples(dataset, transform, cfg.seed),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=loader_workers(cfg.num_workers),
            persistent_workers=False,  # at most cores - 1
            generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG untouched
        )

    def _image_generators(self, micro: int, n: int) -> list[torch.Generator]:
        """One generator per image, seeded by its position in the global batch: an image's random draws
        do not depend on how the batch is split over processes."""
        first = (micro * self.acc.num_processes + self.acc.process_index) * self.micro
        return [torch.Generator().manual_seed(step_seed(self.cfg.seed, self.step, first + i, -1)) for i in range(n)]

    def _micro_step(self, batch: dict[str, Any], micro: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(step_seed(self.cfg.seed, self.step, micro, self.acc.process_index))
        images = batch["image"].to(self.acc.device)
        targets = targets_from_batch(batch["sem"].to(self.acc.device))  # built where they are used
        gens = self._image_generators(micro, len(targets))
        with self.acc.autocast():
            outputs = self.model(images, targets, generators=gens)
            losses = self.criterion(outputs, targets, gens)
        self.acc.backward(losses["loss"] / self.cfg.grad_accum)
        return losses

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train to max_iter (or stop_after steps), resuming from the last checkpoint with `resume`. The run
        folder is locked meanwhile (glassgem.locks): a second process training into it is refused."""
        if not self.acc.is_main_process:
            return self._train(resume)
        with folder_lock(self.out):
            return self._train(resume)

    def _train(self, resume: bool) -> dict[str, Any]:
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        if self.acc.is_main_process:
            remove_stale_temps(checkpoint_dir(self.out))  # leftovers of writes killed mid-way (the run is ours)
            remove_stale_temps(self.out)
        if resume:
            self._resume()
        if self.acc.is_main_process:
            atomic_write_text(self.out / "config.json", json.dumps(self.cfg.to_dict(), indent=2))
            info = {
                "num_processes": self.acc.num_processes,
                "device": str(self.acc.device),
                "mixed_precision": self.cfg.mixed_precision,
                "per_process_batch": self.micro,
                "max_iter": self.max_iter,
                "torch": torch.__version__,
            }
            atomic_write_text(self.out / "run_info.json", json.dumps(info, indent=2))
        logger = RunLogger(self.out, enabled=self.acc.is_main_process, resume_step=self.step)
        self._train_mode(self.model)
        loader = iter(self._loader())
        bar = tqdm(
            total=self.max_iter,
            initial=self.step,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=not (self.progress and self.acc.is_main_process),
        )
        stop = self.max_iter if self.stop_after is None else min(self.max_iter, self.step + self.stop_after)
        t0, images_seen = time.perf_counter(), 0
        while self.step < stop:
            for m in range(self.cfg.grad_accum):
                batch = next(loader)
                sync = m == self.cfg.grad_accum - 1
                with self.acc.no_sync(self.model) if not sync else contextlib.nullcontext():
                    losses = self._micro_step(batch, m)
                images_seen += len(batch["stem"]) * self.acc.num_processes
            grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            lr = max(g["lr"] for g in self.optimizer.param_groups)
            loss = self.acc.reduce(losses["loss"].detach(), reduction="mean").item()
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {self.step}; stopping (last checkpoint kept)")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            if self.step % self.cfg.log_period == 0 or self.step == stop:
                rate = images_seen / max(time.perf_counter() - t0, 1e-9)
                logger.log_train(self.step, loss, losses, lr, float(grad_norm), rate)
            if self.data.val and (self.step % self.cfg.eval_period == 0 or self.step == self.max_iter):
                self.validate(logger, self.data.val)
            if self.step % self.cfg.checkpoint_period == 0 or self.step == stop:
                self.save()
        bar.close()
        if self.step >= self.max_iter and self.acc.is_main_process:
            save_pretrained(self.acc.unwrap_model(self.model), self.out / "final")
        logger.close()
        return {"step": self.step, "max_iter": self.max_iter, "best_iou": self.best_iou}

    def _train_mode(self, model: torch.nn.Module) -> None:
        model.train()
        if self.cfg.freeze_encoder_bn:
            hold_encoder_batchnorm(self.acc.unwrap_model(model))

    def validate(self, logger: RunLogger, val: list[Pair]) -> dict[str, float]:
        """Metrics on `val` (on the main process; {} elsewhere); a new best model is saved to best/, with best.json."""
        metrics: dict[str, float] = {}
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.model)
            model.eval()
            metrics = evaluate_model(model, val, size=self.cfg.eval_size, progress=False)
            self._train_mode(model)
            logger.log_val(self.step, metrics)
            if metrics["iou"] > self.best_iou:
                self.best_iou = metrics["iou"]
                save_pretrained(model, self.out / "best")
                atomic_write_text(self.out / "best.json", json.dumps({"step": self.step, **metrics}, indent=2))
        self.acc.wait_for_everyone()
        return metrics
