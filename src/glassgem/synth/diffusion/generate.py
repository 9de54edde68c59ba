"""S-GSD generation: every mask x `scale` samples from a fine-tuned ControlNet, resumable and sharded.

Each sample is a job (mask, prompt, seed) fixed by (base seed, mask stem, k) alone, so the plan does not
depend on how many masks there are or in which order they are listed, any number of processes can split
it (job i goes to process i % num_processes under `accelerate launch`), and a rerun skips finished jobs.
Output, in the layout glassgem's datasets read (`sgsd`):

  OUT/images/<stem>_<k>.jpg   the generated image, at the mask's size
  OUT/masks/<stem>_<k>.png    a copy of the mask that conditioned it (0/255)
  OUT/manifest.jsonl          one record per job: prompt, seed, models, sampler settings, CLIP score

A job is finished when its record is in the manifest and, if the image was kept, both files exist
(they are written atomically before the record). Jobs dropped by the CLIP filter are recorded too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError, DataError
from ...io import MASK_EXTENSIONS, load_mask, save_image, save_mask
from .. import manifest
from .clip_filter import ClipScorer
from .controlnet_data import refuse_eval_split
from .prompts import select_prompts
from .sd_components import (
    DEFAULT_BASE,
    SCHEDULERS,
    build_pipeline,
    downsample_factor,
    load_controlnet,
    load_sd,
    make_scheduler,
    resolve_dtype,
)

IMAGE_FORMATS = ("jpg", "png")
# Settings that change the pixels: a finished job made with other values is a conflict, not a skip.
SAMPLING_KEYS = ("prompt", "seed", "steps", "guidance", "conditioning_scale", "scheduler", "resolution")


@dataclass
class GenerateConfig:
    masks: str
    controlnet: str
    out: str
    scale: int = 5
    base: str = DEFAULT_BASE
    steps: int = 20
    guidance: float = 7.5
    conditioning_scale: float = 1.0
    seed: int = 0
    prompts_file: str | None = None
    single_prompt: bool = False
    clip_filter: str | None = None
    min_score: float | None = None
    resolution: int = 512
    scheduler: str = "unipc"
    dtype: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere
    image_format: str = "jpg"
    allow_eval_masks: bool = False
    progress: bool = True

    def validate(self) -> None:
        for name in ("scale", "steps", "resolution"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"--image-format must be jpg or png, got {self.image_format!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if (self.clip_filter is None) != (self.min_score is None):
            raise ConfigError("--clip-filter MODEL and --min-score S go together")


@dataclass(frozen=True)
class Job:
    index: int  # position in the plan; process index % world runs it
    id: str  # "<stem>_<k>": the output file stem
    stem: str
    k: int
    mask_path: Path
    prompt: str
    seed: int


# ------------------------------------------------------------------------------ the plan
def _digest(*parts: object) -> int:
    text = "\0".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def job_seed(base_seed: int, stem: str, k: int) -> int:
    return _digest(base_seed, stem, k) & (2**63 - 1)


def job_prompt(prompts: tuple[str, ...], base_seed: int, stem: str, k: int) -> str:
    """Consecutive prompts from a per-mask offset: a mask's samples get different prompts (while
    k < number of prompts) and the prompts are used evenly across masks."""
    return prompts[(_digest(base_seed, stem, "prompt") + k) % len(prompts)]


def find_masks(folder: str | os.PathLike, allow_eval_masks: bool = False) -> list[Path]:
    """Mask files of FOLDER, or of FOLDER/masks when FOLDER is a dataset root, sorted by stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: masks folder not found")
    if (folder / "masks").is_dir():
        folder = folder / "masks"
    refuse_eval_split([folder], allow_eval_masks)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MASK_EXTENSIONS
    )
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise DataError(f"{folder}: stem {p.stem!r} names several masks ({stems[p.stem].name}, {p.name})")
        stems[p.stem] = p
    if not stems:
        raise DataError(f"{folder}: no mask files ({', '.join(MASK_EXTENSIONS)})")
    return [stems[s] for s in sorted(stems)]


def plan_jobs(mask_paths: list[Path], scale: int, seed: int, prompts: tuple[str, ...]) -> list[Job]:
    jobs: list[Job] = []
    for path in mask_paths:
        for k in range(scale):
            jobs.append(
                Job(
                    len(jobs),
                    f"{path.stem}_{k}",
                    path.stem,
                    k,
                    path,
                    job_prompt(prompts, seed, path.stem, k),
                    job_seed(seed, path.stem, k),
                )
            )
    return jobs


# ------------------------------------------------------------------------------ one job
def generation_size(h: int, w: int, resolution: int, multiple: int) -> tuple[int, int]:
    """(h, w) to generate at: short side ~ resolution, aspect kept, both multiples of `multiple`,
    long side at most 2 x resolution (panoramas are shrunk rather than made huge)."""
    scale = min(resolution / min(h, w), 2 * resolution / max(h, w))

    def snap(x: float) -> int:
        return max(multiple, int(round(x * scale / multiple)) * multiple)

    return snap(h), snap(w)


def render(pipe: Any, job: Job, mask: np.ndarray, cfg: GenerateConfig, multiple: int) -> Image.Image:
    """Generate one image from its mask and bring it back to the mask's size."""
    import torch

    h, w = mask.shape
    gh, gw = generation_size(h, w, cfg.resolution, multiple)
    control = Image.fromarray(mask * 255).convert("RGB").resize((gw, gh), Image.Resampling.NEAREST)
    # A CPU generator makes a job's noise identical on any device.
    generator = torch.Generator().manual_seed(job.seed)
    image = pipe(
        job.prompt,
        image=control,
        height=gh,
        width=gw,
        num_inference_steps=cfg.steps,
        guidance_scale=cfg.guidance,
        controlnet_conditioning_scale=cfg.conditioning_scale,
        generator=generator,
        output_type="pil",
    ).images[0]
    return image if image.size == (w, h) else image.resize((w, h), Image.Resampling.LANCZOS)


def _paths(out: Path, job: Job, image_format: str) -> tuple[Path, Path]:
    return out / "images" / f"{job.id}.{image_format}", out / "masks" / f"{job.id}.png"


def _record(
    job: Job,
    cfg: GenerateConfig,
    dtype: str,
    kept: bool,
    score: float | None,
    size: tuple[int, int],
    image_rel: str | None,
    mask_rel: str | None,
) -> dict:
    return {
        "id": job.id,
        "stem": job.stem,
        "k": job.k,
        "source_mask": str(job.mask_path),
        "image": image_rel,
        "mask": mask_rel,
        "kept": kept,
        "clip_score": score,
        "clip_model": cfg.clip_filter,
        "min_score": cfg.min_score,
        "width": size[1],
        "height": size[0],
        "prompt": job.prompt,
        "seed": job.seed,
        "base": cfg.base,
        "controlnet": cfg.controlnet,
        "scheduler": cfg.scheduler,
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "conditioning_scale": cfg.conditioning_scale,
        "resolution": cfg.resolution,
        "dtype": dtype,
    }


def is_finished(record: dict | None, out: Path) -> bool:
    if record is None:
        return False
    if not record.get("kept", True):
        return True
    return all(isinstance(record.get(k), str) and (out / record[k]).is_file() for k in ("image", "mask"))


def _check_same_settings(record: dict, job: Job, cfg: GenerateConfig) -> None:
    expected = {
        "prompt": job.prompt,
        "seed": job.seed,
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "conditioning_scale": cfg.conditioning_scale,
        "scheduler": cfg.scheduler,
        "resolution": cfg.resolution,
    }
    for key in SAMPLING_KEYS:
        if record.get(key) != expected[key]:
            raise ConfigError(
                f"{Path(cfg.out) / manifest.MANIFEST}: job {job.id} was made with {key}={record.get(key)!r}, "
                f"this run asks for {expected[key]!r}; use another --out (or the same settings) to continue"
            )


# ------------------------------------------------------------------------------ the run
def generate(cfg: GenerateConfig, on_job_done: Callable[[Job, dict], None] | None = None) -> dict:
    """Run (or finish) a generation. `on_job_done(job, record)` is called after each new job is
    recorded. Returns {"jobs", "done_before", "generated" (by this process), "kept", "dropped" (totals, on
    the main process), "out", "main_process"}."""
    import torch
    from accelerate import PartialState
    from tqdm.auto import tqdm

    cfg.validate()
    out = Path(cfg.out)
    prompts = select_prompts(cfg.prompts_file, cfg.single_prompt)
    jobs = plan_jobs(find_masks(cfg.masks, cfg.allow_eval_masks), cfg.scale, cfg.seed, prompts)
    # AcceleratorState honours `accelerate launch --cpu` (ACCELERATE_USE_CPU); PartialState needs telling.
    state = PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))
    records = manifest.read_records(out)
    mine, done_before = [], 0
    for job in jobs:
        finished = is_finished(records.get(job.id), out)
        if finished:
            _check_same_settings(records[job.id], job, cfg)
            done_before += 1
        elif job.index % state.num_processes == state.process_index:
            mine.append(job)

    if cfg.progress and state.is_main_process and done_before:
        print(f"synth generate: {done_before} of {len(jobs)} jobs already done in {out}")
    generated = 0
    if mine:
        dtype = resolve_dtype(cfg.dtype, state.device)
        sd = load_sd(cfg.base, dtype=dtype).frozen()
        controlnet = load_controlnet(cfg.controlnet, dtype=dtype).eval()
        pipe = build_pipeline(sd, controlnet, make_scheduler(cfg.scheduler, sd.scheduler_config)).to(state.device)
        multiple = downsample_factor(sd.vae, sd.unet)
        scorer = None
        if cfg.clip_filter:
            scorer = ClipScorer(cfg.clip_filter, state.device)
        shard = manifest.shard_path(out, state.process_index)
        bar = tqdm(
            mine,
            desc="synth generate",
            unit="img",
            dynamic_ncols=True,
            disable=not (cfg.progress and state.is_main_process),
        )
        for job in bar:
            mask = load_mask(job.mask_path)
            with torch.inference_mode():
                image = render(pipe, job, mask, cfg, multiple)
                score = scorer.score(image, job.prompt) if scorer else None
            kept = score is None or cfg.min_score is None or score >= cfg.min_score
            rel: tuple[str | None, str | None] = (None, None)
            if kept:
                image_path, mask_path = _paths(out, job, cfg.image_format)
                save_mask(mask_path, mask)
                save_image(image_path, image, **({"quality": 95} if cfg.image_format == "jpg" else {}))
                rel = (image_path.relative_to(out).as_posix(), mask_path.relative_to(out).as_posix())
            record = _record(job, cfg, str(dtype).removeprefix("torch."), kept, score, mask.shape, *rel)
            manifest.append_record(shard, record)  # after the files: a record means they exist
            generated += 1
            if on_job_done is not None:
                on_job_done(job, record)

    state.wait_for_everyone()
    n_kept = n_dropped = 0
    if state.is_main_process:
        order = {job.id: job.index for job in jobs}
        merged = manifest.merge(out, lambda r: is_finished(r, out), order)
        n_kept = sum(1 for r in merged if r.get("kept", True) and r["id"] in order)
        n_dropped = sum(1 for r in merged if not r.get("kept", True) and r["id"] in order)
    state.wait_for_everyone()
    return {
        "jobs": len(jobs),
        "done_before": done_before,
        "generated": generated,
        "kept": n_kept,
        "dropped": n_dropped,
        "out": str(out),
        "main_process": state.is_main_process,
    }
