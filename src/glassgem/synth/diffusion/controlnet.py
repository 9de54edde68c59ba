"""ControlNet fine-tuning on real glass image/mask pairs (the paper's "domain customisation").

Stable Diffusion's UNet, VAE and text encoder stay frozen; only the ControlNet learns to render a
glass scene from its mask. The loop runs under Hugging Face Accelerate: one process as is, many
with `accelerate launch` (no code change). Output folder:

  OUT/checkpoints/checkpoint-<step>/   accelerate state (optimizer, scheduler, RNG) + controlnet/
  OUT/validation/step-<step>.png       mask | generated grids
  OUT/controlnet/                      the final ControlNet (save_pretrained; `synth generate --controlnet`)

Checkpoints are written into a temporary folder and renamed, so a checkpoint-<step> folder is always
complete; `resume=True` continues from the newest one and, because every random draw is a function of
(seed, micro-batch), reproduces the uninterrupted run. Accelerate stores optimizer and RNG state as
pickles, so resume only from run folders you made yourself.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import ConfigError, GlassgemError
from ...io import atomic_write_text, save_image
from .controlnet_data import ControlNetPairs, DrawSampler, micro_batch_generator, take_validation_masks, training_pairs
from .prompts import select_prompts
from .sd_components import (
    DEFAULT_BASE,
    DEFAULT_CONTROLNET,
    build_pipeline,
    load_controlnet,
    load_sd,
    make_scheduler,
    weight_dtype,
)

if TYPE_CHECKING:
    from diffusers.models.modeling_utils import ModelMixin

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "glassgem_state.json"


@dataclass
class FinetuneConfig:
    data: str
    out: str
    base: str = DEFAULT_BASE
    init_controlnet: str = DEFAULT_CONTROLNET  # a ControlNet folder/hub id, or "unet" (from_unet)
    resolution: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 5e-6
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    max_steps: int = 10_000  # optimizer steps
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep_last: int = 3
    validate_every: int = 500  # 0: never
    validation_images: int = 4
    validation_inference_steps: int = 20
    resume: bool = False
    prompts_file: str | None = None
    single_prompt: bool = False
    allow_eval_masks: bool = False
    seed: int = 0
    num_workers: int = 2
    progress: bool = True

    def validate(self) -> None:
        positive = ("resolution", "batch_size", "grad_accum", "max_steps", "checkpoint_every", "keep_last")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.resolution % 8:
            raise ConfigError(f"--resolution must be a multiple of 8 (the VAE's factor), got {self.resolution}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")


# ------------------------------------------------------------------------------ checkpoints
def list_checkpoints(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints under OUT/checkpoints, oldest first."""
    root = Path(out) / "checkpoints"
    found = []
    if root.is_dir():
        for d in root.iterdir():
            step = d.name[len(CHECKPOINT_PREFIX) :]
            if d.is_dir() and d.name.startswith(CHECKPOINT_PREFIX) and step.isdigit():
                found.append((int(step), d))
    return sorted(found)


def _register_controlnet_hooks(accelerator: Any) -> None:
    """Store the ControlNet inside each checkpoint as a diffusers folder (checkpoint-N/controlnet/),
    usable directly by `synth generate`, instead of accelerate's anonymous model file."""
    from diffusers import ControlNetModel

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, "controlnet"))
        weights.clear()  # already written; accelerate would otherwise save them a second time

    def load_hook(models: list, input_dir: str) -> None:
        while models:
            model = models.pop()
            saved = ControlNetModel.from_pretrained(os.path.join(input_dir, "controlnet"))
            accelerator.unwrap_model(model).load_state_dict(saved.state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(accelerator: Any, out: Path, step: int, keep_last: int, meta: dict) -> Path:
    """Write checkpoint-<step> atomically (temp folder, then rename) and keep the newest `keep_last`."""
    root = out / "checkpoints"
    tmp, final = root / f".tmp-{CHECKPOINT_PREFIX}{step}", root / f"{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its own RNG state into it
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(tmp / STATE_FILE, json.dumps({**meta, "step": step}, indent=1))
        if final.exists():  # a resumed run that saves the same step again
            shutil.rmtree(final)
        os.rename(tmp, final)
        for _, old in list_checkpoints(out)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def export_controlnet(controlnet: ModelMixin, folder: Path) -> Path:
    """save_pretrained into a temporary folder, then swap it in (a reader never sees half a model)."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    controlnet.save_pretrained(tmp)
    _replace_dir(tmp, folder)
    return folder


# ------------------------------------------------------------------------------ training step
@torch.no_grad()
def encode_prompts(sd: Any, prompts: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[P, L, D] text states of every prompt: the text encoder is frozen, so encode each once."""
    chunks = []
    for i in range(0, len(prompts), 64):
        ids = sd.tokenizer(
            list(prompts[i : i + 64]),
            padding="max_length",
            max_length=sd.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        chunks.append(sd.text_encoder(ids.to(device))[0].to(dtype))
    return torch.cat(chunks)


def diffusion_loss(
    batch: dict,
    sd: Any,
    controlnet: ModelMixin,
    noise_scheduler: Any,
    prompt_states: torch.Tensor,
    generator: torch.Generator,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The ControlNet objective: predict the noise (or velocity) added to the latents of the real image,
    with the mask as control. All randomness comes from `generator`."""
    device = prompt_states.device
    pixels = batch["pixel_values"].to(device, dtype)  # B x 3 x R x R in [-1, 1]
    cond = batch["conditioning"].to(device, torch.float32)  # B x 3 x R x R in {0, 1}
    with torch.no_grad():
        latents = sd.vae.encode(pixels).latent_dist.sample(generator=generator) * sd.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    t = t.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    states = prompt_states[batch["prompt_index"].to(device)]  # B x L x D
    down, mid = controlnet(noisy, t, encoder_hidden_states=states, controlnet_cond=cond, return_dict=False)
    pred = sd.unet(
        noisy,
        t,
        encoder_hidden_states=states,
        down_block_additional_residuals=[r.to(dtype) for r in down],
        mid_block_additional_residual=mid.to(dtype),
        return_dict=False,
    )[0]
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


# ------------------------------------------------------------------------------ validation grid
def render_validation(
    accelerator: Any,
    sd: Any,
    controlnet: ModelMixin,
    scheduler_config: dict,
    masks: list[np.ndarray],
    prompt: str,
    cfg: FinetuneConfig,
    path: Path,
) -> Path:
    """One row per validation mask: mask | image generated from it (fixed seed, so rows are comparable
    across steps)."""
    pipe = build_pipeline(sd, accelerator.unwrap_model(controlnet), make_scheduler("unipc", scheduler_config))
    rows = []
    for i, mask in enumerate(masks):
        control = np.repeat(mask[:, :, None] * 255, 3, axis=2).astype(np.uint8)
        with accelerator.autocast():
            image = pipe(
                prompt,
                image=Image.fromarray(control),
                num_inference_steps=cfg.validation_inference_steps,
                generator=torch.Generator().manual_seed(cfg.seed + i),
                output_type="np",
            ).images[0]
        rows.append(np.concatenate([control, (image * 255).round().astype(np.uint8)], axis=1))
    return save_image(path, np.concatenate(rows, axis=0))


# ------------------------------------------------------------------------------ the loop
def _make_accelerator(cfg: FinetuneConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    try:
        return Accelerator(
            mixed_precision=cfg.mixed_precision, project_config=ProjectConfiguration(project_dir=cfg.out)
        )
    except ValueError as e:  # e.g. fp16 without a GPU
        raise ConfigError(f"--mixed-precision {cfg.mixed_precision}: {e}") from None


def _start(accelerator: Any, cfg: FinetuneConfig, out: Path) -> tuple[int, Path] | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run without --resume."""
    found = list_checkpoints(out)
    if found and not cfg.resume:
        raise GlassgemError(
            f"{out}: already holds checkpoints (newest {found[-1][1].name}); "
            "pass --resume to continue that run, or choose another --out"
        )
    if cfg.resume and not found and accelerator.is_main_process:
        print(f"glassgem: no checkpoint in {out / 'checkpoints'}; starting from step 0")
    return found[-1] if found else None


def finetune_controlnet(cfg: FinetuneConfig) -> dict:
    """Fine-tune a ControlNet; returns {"start_step", "step", "loss" (of the last step, averaged over
    processes), "controlnet", "checkpoints", "main_process"}."""
    from diffusers import DDPMScheduler
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    cfg.validate()
    out = Path(cfg.out)
    pairs = training_pairs(cfg.data, cfg.allow_eval_masks)  # before any model loads: fail fast
    prompts = select_prompts(cfg.prompts_file, cfg.single_prompt)
    accelerator = _make_accelerator(cfg)
    resume_from = _start(accelerator, cfg, out)
    device, dtype = accelerator.device, weight_dtype(cfg.mixed_precision)

    sd = load_sd(cfg.base, dtype=dtype).frozen()
    for m in (sd.text_encoder, sd.vae, sd.unet):
        m.to(device)
    noise_scheduler = DDPMScheduler.from_config(sd.scheduler_config)
    # On resume the weights come from the checkpoint, so any init with the right architecture will do.
    # The trainable net stays fp32 under mixed precision: autocast handles the compute dtype.
    controlnet = load_controlnet(cfg.init_controlnet, unet=sd.unet, dtype=torch.float32, vae=sd.vae)
    controlnet.train()
    if cfg.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        sd.unet.enable_gradient_checkpointing()  # its activations are kept for the ControlNet's gradient
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)  # constant, as the reference
    controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    _register_controlnet_hooks(accelerator)

    start_step = 0
    if resume_from is not None:
        start_step, folder = resume_from
        accelerator.load_state(str(folder))
    prompt_states = encode_prompts(sd, prompts, device, dtype)
    dataset = ControlNetPairs(pairs, cfg.resolution, len(prompts), cfg.seed)
    sampler = DrawSampler(
        len(pairs),
        cfg.batch_size,
        cfg.seed,
        accelerator.process_index,
        accelerator.num_processes,
        start=start_step * cfg.grad_accum,
    )
    loader = iter(
        DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    )
    validation_masks = take_validation_masks(pairs, cfg.validation_images, cfg.resolution)
    meta = {"config": asdict(cfg), "prompts": list(prompts), "n_pairs": len(pairs)}

    bar = tqdm(
        total=cfg.max_steps,
        initial=start_step,
        desc="finetune-controlnet",
        unit="step",
        disable=not (cfg.progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    step, loss_value = start_step, float("nan")
    while step < cfg.max_steps:
        total = 0.0
        for micro in range(cfg.grad_accum):
            batch = next(loader)
            g = micro_batch_generator(cfg.seed, accelerator.process_index, step * cfg.grad_accum + micro)
            last = micro == cfg.grad_accum - 1
            with nullcontext() if last else accelerator.no_sync(controlnet):  # sync once per step
                with accelerator.autocast():
                    loss = diffusion_loss(batch, sd, controlnet, noise_scheduler, prompt_states, g, dtype)
                accelerator.backward(loss / cfg.grad_accum)
            total += loss.detach().float().item() / cfg.grad_accum
        accelerator.clip_grad_norm_(controlnet.parameters(), cfg.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss_value = accelerator.reduce(torch.tensor(total, device=device), reduction="mean").item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            save_checkpoint(accelerator, out, step, cfg.keep_last, meta)
        if cfg.validate_every and (step % cfg.validate_every == 0) and accelerator.is_main_process:
            render_validation(
                accelerator,
                sd,
                controlnet,
                sd.scheduler_config,
                validation_masks,
                prompts[0],
                cfg,
                out / "validation" / f"step-{step:06d}.png",
            )
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        export_controlnet(accelerator.unwrap_model(controlnet), out / "controlnet")
    accelerator.wait_for_everyone()
    return {
        "start_step": start_step,
        "step": step,
        "loss": loss_value,
        "controlnet": str(out / "controlnet"),
        "checkpoints": [str(p) for _, p in list_checkpoints(out)],
        "main_process": accelerator.is_main_process,
    }
