"""Loading Stable Diffusion and ControlNet components: a hub id or a local folder (glassgem.hub.refs).

A "base" is a Stable Diffusion model in the diffusers layout (unet/, vae/, text_encoder/, tokenizer/,
scheduler/), given as a local folder or a hub repo id (downloaded by the libraries' own cache when the
user has network). Whatever goes wrong while loading becomes a CheckpointError that names the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import CheckpointError, ConfigError
from ...hub.refs import check_ref, load_or_raise

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET = "lllyasviel/sd-controlnet-seg"
SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI can read the defaults cheaply
    import torch

    # diffusers' models (VAE, UNet, ControlNet); its top-level names are its placeholder classes to a type checker
    from diffusers.models.modeling_utils import ModelMixin


@dataclass
class SDComponents:
    tokenizer: Any  # CLIPTokenizer
    text_encoder: torch.nn.Module  # CLIPTextModel
    vae: ModelMixin  # AutoencoderKL
    unet: ModelMixin  # UNet2DConditionModel
    scheduler_config: dict  # the base's scheduler config; callers pick the scheduler class

    def frozen(self) -> SDComponents:
        """Eval mode, no gradients: SD stays frozen while the ControlNet learns (the paper's setup)."""
        for m in (self.text_encoder, self.vae, self.unet):
            m.requires_grad_(False)
            m.eval()
        return self


def _is_local(ref: str | os.PathLike) -> bool:
    return Path(ref).exists()


def load_sd(base: str | os.PathLike, dtype: torch.dtype | None = None) -> SDComponents:
    """Tokenizer, text encoder, VAE and UNet of a Stable Diffusion base, plus its scheduler config."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    check_ref(base, "Stable Diffusion model")
    if _is_local(base):
        missing = [f"{s}/" for s in SD_SUBFOLDERS if not (Path(base) / s).is_dir()]
        if missing:
            raise CheckpointError(
                f"{base}: not a Stable Diffusion folder in the diffusers layout (missing {', '.join(missing)})"
            )
    kw = {"torch_dtype": dtype} if dtype is not None else {}
    return SDComponents(
        tokenizer=load_or_raise("tokenizer", base, CLIPTokenizer.from_pretrained, subfolder="tokenizer"),
        text_encoder=load_or_raise("text encoder", base, CLIPTextModel.from_pretrained, subfolder="text_encoder", **kw),
        vae=load_or_raise("VAE", base, AutoencoderKL.from_pretrained, subfolder="vae", **kw),
        unet=load_or_raise("UNet", base, UNet2DConditionModel.from_pretrained, subfolder="unet", **kw),
        scheduler_config=load_scheduler_config(base),
    )


def load_scheduler_config(base: str | os.PathLike) -> dict:
    from diffusers import DDPMScheduler

    return dict(load_or_raise("scheduler config", base, DDPMScheduler.load_config, subfolder="scheduler"))


# ControlNet's conditioning embedding (diffusers' default for SD: 3 stride-2 stages, 8x = SD's VAE factor)
CONDITIONING_CHANNELS = (16, 32, 96, 256)


def conditioning_channels(vae: ModelMixin | None) -> tuple[int, ...]:
    """Conditioning-embedding widths whose stride-2 stages shrink the control image exactly as `vae` shrinks
    the picture into latents (SD: 8x, the default widths; a 2-level test VAE: 2x, one stage)."""
    if vae is None:
        return CONDITIONING_CHANNELS
    stages = len(vae.config.block_out_channels) - 1
    widths = list(CONDITIONING_CHANNELS[: stages + 1])
    while len(widths) < stages + 1:
        widths.append(widths[-1])
    return tuple(widths)


def load_controlnet(
    ref: str | os.PathLike,
    unet: ModelMixin | None = None,
    dtype: torch.dtype | None = None,
    vae: ModelMixin | None = None,
) -> ModelMixin:
    """A ControlNet from a folder or hub id; `ref="unet"` copies the encoder half of `unet`
    (ControlNetModel.from_unet), the original ControlNet's initialisation, with a conditioning embedding
    that matches `vae`'s down-sampling (`conditioning_channels`)."""
    from diffusers import ControlNetModel

    if str(ref) == "unet":
        if unet is None:
            raise ConfigError("--init-controlnet unet needs the base model's UNet")
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels(vae))
        return net.to(dtype) if dtype is not None else net
    check_ref(ref, "ControlNet")
    if _is_local(ref) and not (Path(ref) / "config.json").is_file():
        raise CheckpointError(f"{ref}: not a ControlNet folder (no config.json; expected a save_pretrained folder)")
    kw = {"torch_dtype": dtype} if dtype is not None else {}
    return load_or_raise("ControlNet", ref, ControlNetModel.from_pretrained, **kw)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is fp16 on CUDA (SD's usual inference precision) and fp32 elsewhere."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; choose auto, fp32, fp16 or bf16")
    return table[name]


def weight_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype of the frozen models under Accelerate's mixed precision (the trainable net stays fp32)."""
    import torch

    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def downsample_factor(vae: ModelMixin, unet: ModelMixin) -> int:
    """Pixel sizes must be multiples of this: the VAE's factor times the UNet's down-sampling."""
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    unet_factor = 2 ** (len(unet.config.block_out_channels) - 1)
    return vae_factor * unet_factor


SCHEDULERS = ("unipc", "ddim", "euler", "base")


def make_scheduler(name: str, config: dict) -> Any:
    """A sampler for generation built from the base's scheduler config. 'unipc' (default) is the
    usual choice for ControlNet at ~20 steps; 'base' is whatever class the base model ships."""
    import diffusers

    classes = {"unipc": "UniPCMultistepScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler"}
    if name == "base":
        cls_name = config.get("_class_name", "DDIMScheduler")
    elif name in classes:
        cls_name = classes[name]
    else:
        raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return getattr(diffusers, cls_name).from_config(config)


def build_pipeline(sd: SDComponents, controlnet: ModelMixin, scheduler: Any) -> Any:
    """StableDiffusionControlNetPipeline without the safety checker (its CLIP model is another large
    download, and the images here are glass scenes rendered from masks)."""
    from diffusers import StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # the caller shows one bar over all jobs; the ignore: diffusers' top-level names are its placeholder
    # classes to a type checker (the real pipeline is a DiffusionPipeline, which has this method)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe
