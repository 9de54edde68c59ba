"""ControlNet fine-tuning on tiny offline components: checkpoints, exact resume, validation grids,
evaluation-split refusal, and the training samples themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import GDD_DEV, needs_gdd_dev
from glassgem.cli import main
from glassgem.errors import ConfigError, GlassgemError
from glassgem.synth.diffusion.controlnet import FinetuneConfig, finetune_controlnet, list_checkpoints
from glassgem.synth.diffusion.controlnet_data import (
    ControlNetPairs,
    DrawSampler,
    EvalSplitError,
    micro_batch_generator,
    training_pairs,
)
from synth_fixtures import write_pairs

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate")
WEIGHTS = "controlnet/diffusion_pytorch_model.safetensors"


def _config(data: Path, out: Path, sd: Path, cn: Path, **kw) -> FinetuneConfig:
    base = dict(
        data=str(data),
        out=str(out),
        base=str(sd),
        init_controlnet=str(cn),
        resolution=64,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        keep_last=3,
        validate_every=0,
        validation_images=2,
        validation_inference_steps=2,
        num_workers=0,
        progress=False,
    )
    return FinetuneConfig(**{**base, **kw})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), n=4, size=(72, 80))


def test_finetune_checkpoint_resume_equals_uninterrupted_run(tmp_path, pairs_dir, tiny_sd, tiny_cn):
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"

    first = finetune_controlnet(_config(pairs_dir, interrupted, tiny_sd, tiny_cn, max_steps=2))
    assert (first["start_step"], first["step"]) == (0, 2)
    ((step, ckpt),) = list_checkpoints(interrupted)
    assert step == 2 and (ckpt / "controlnet" / "config.json").is_file() and (ckpt / "optimizer.bin").is_file()
    assert json.loads((ckpt / "glassgem_state.json").read_text())["step"] == 2

    resumed = finetune_controlnet(_config(pairs_dir, interrupted, tiny_sd, tiny_cn, max_steps=3, resume=True))
    assert (resumed["start_step"], resumed["step"]) == (2, 3)

    finetune_controlnet(
        _config(pairs_dir, straight, tiny_sd, tiny_cn, max_steps=3, checkpoint_every=1, keep_last=2, validate_every=3)
    )
    a, b, init = _weights(interrupted / "controlnet"), _weights(straight / "controlnet"), _weights(tiny_cn)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted run"
    assert any(not torch.equal(a[k], init[k]) for k in a), "training did not change the ControlNet"
    # the step-2 checkpoints of both runs agree too, and only the last K=2 were kept
    assert [s for s, _ in list_checkpoints(straight)] == [2, 3]
    c2a = _weights(interrupted / "checkpoints" / "checkpoint-2" / "controlnet")
    c2b = _weights(straight / "checkpoints" / "checkpoint-2" / "controlnet")
    assert all(torch.equal(c2a[k], c2b[k]) for k in c2a)
    assert not any(p.name.startswith(".tmp") for p in (straight / "checkpoints").iterdir())
    # validation grid: one row per validation mask, mask | generated
    grid = np.asarray(Image.open(straight / "validation" / "step-000003.png"))
    assert grid.shape == (2 * 64, 2 * 64, 3)
    left = grid[:64, :64, 0]
    assert set(np.unique(left)) <= {0, 255} and 0 < (left == 255).mean() < 1  # the mask, as drawn


def test_gradient_checkpointing_gives_the_same_step(tmp_path, pairs_dir, tiny_sd, tiny_cn):
    plain = finetune_controlnet(_config(pairs_dir, tmp_path / "plain", tiny_sd, tiny_cn, max_steps=1))
    gc = finetune_controlnet(
        _config(pairs_dir, tmp_path / "gc", tiny_sd, tiny_cn, max_steps=1, gradient_checkpointing=True)
    )
    assert plain["loss"] == pytest.approx(gc["loss"], rel=1e-6)
    a, b = _weights(tmp_path / "plain" / "controlnet"), _weights(tmp_path / "gc" / "controlnet")
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)


def test_init_controlnet_from_the_unet_matches_the_vae(tmp_path, pairs_dir, tiny_sd):
    """`--init-controlnet unet`: the ControlNet copies the UNet's encoder, and its conditioning embedding
    shrinks the control image by the VAE's factor (2x for the test VAE, 8x for SD's), so a step runs."""
    from diffusers import UNet2DConditionModel

    out = tmp_path / "from-unet"
    result = finetune_controlnet(_config(pairs_dir, out, tiny_sd, "unet", max_steps=1))
    assert result["step"] == 1 and np.isfinite(result["loss"])
    cfg = json.loads((out / "controlnet" / "config.json").read_text())
    assert cfg["conditioning_embedding_out_channels"] == [16, 32]  # one stride-2 stage = the test VAE's 2x
    unet = UNet2DConditionModel.from_pretrained(tiny_sd, subfolder="unet")
    net = load_file(out / "controlnet" / "diffusion_pytorch_model.safetensors")
    init = {k: v for k, v in unet.state_dict().items() if k.startswith("down_blocks.")}
    copied = [k for k in init if k in net and net[k].shape == init[k].shape]
    assert len(copied) == len(init) > 10  # the UNet's encoder, one step of training away from the copy


def test_conditioning_channels_follow_the_vae():
    from types import SimpleNamespace

    from glassgem.synth.diffusion.sd_components import conditioning_channels

    def vae(levels):
        return SimpleNamespace(config=SimpleNamespace(block_out_channels=[4] * levels))

    assert conditioning_channels(vae(4)) == (16, 32, 96, 256)  # SD's VAE: 8x, diffusers' default
    assert conditioning_channels(vae(2)) == (16, 32)
    assert conditioning_channels(vae(1)) == (16,)
    assert conditioning_channels(None) == (16, 32, 96, 256)


def test_refuses_to_overwrite_a_run_without_resume(tmp_path, pairs_dir):
    (tmp_path / "run" / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    cfg = _config(pairs_dir, tmp_path / "run", tmp_path / "no-sd", tmp_path / "no-cn", max_steps=6)
    with pytest.raises(GlassgemError, match="checkpoint-5.*--resume"):
        finetune_controlnet(cfg)


def test_bad_options_are_config_errors(tmp_path, pairs_dir):
    for bad in (dict(resolution=60), dict(batch_size=0), dict(mixed_precision="fp8"), dict(lr=0.0)):
        with pytest.raises(ConfigError):
            finetune_controlnet(_config(pairs_dir, tmp_path / "x", tmp_path, tmp_path, max_steps=1, **bad))


def _split_dataset(root: Path) -> Path:
    for split in ("train", "val"):
        write_pairs(root / split, n=2, size=(40, 48))
    return root


def test_eval_split_masks_are_refused(tmp_path):
    root = _split_dataset(tmp_path / "glass")
    # a dataset with splits trains on its train split only
    pairs = training_pairs(root)
    assert len(pairs) == 2 and all("train" in p.mask_path.parts for p in pairs)
    # pointing at the val split is refused, unless explicitly allowed
    with pytest.raises(EvalSplitError, match="'val' split.*--allow-eval-masks"):
        training_pairs(root / "val")
    assert len(training_pairs(root / "val", allow_eval_masks=True)) == 2
    # a folder holding only evaluation splits is refused too
    only_val = tmp_path / "only_val"
    write_pairs(only_val / "validation", n=1, size=(40, 48))
    with pytest.raises(EvalSplitError, match="no train split"):
        training_pairs(only_val)


def test_cli_refuses_eval_masks_with_a_one_line_error(tmp_path, capsys):
    root = _split_dataset(tmp_path / "glass")
    code = main(["synth", "finetune-controlnet", "--data", str(root / "val"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--allow-eval-masks" in err and "val" in err


@needs_gdd_dev
def test_real_gdd_dev_trains_on_train_only():
    pairs = training_pairs(GDD_DEV)
    assert len(pairs) == 572 and all(p.mask_path.parent.parent.name == "train" for p in pairs)
    with pytest.raises(EvalSplitError):
        training_pairs(GDD_DEV / "val")


def test_training_sample_is_image_mask_and_caption(tmp_path):
    root = write_pairs(tmp_path / "d", n=3, size=(48, 80))
    pairs = training_pairs(root)
    ds = ControlNetPairs(pairs, resolution=32, n_prompts=23, seed=7)
    s = ds[1]
    assert s["pixel_values"].shape == (3, 32, 32) and s["conditioning"].shape == (3, 32, 32)
    assert -1.0 <= float(s["pixel_values"].min()) and float(s["pixel_values"].max()) <= 1.0
    cond = s["conditioning"]
    assert set(torch.unique(cond).tolist()) == {0.0, 1.0} and torch.equal(cond[0], cond[2])
    assert 0 <= s["prompt_index"] < 23
    # the same draw is the same sample; the caption over many epochs covers many prompts
    again = ds[1]
    assert torch.equal(s["pixel_values"], again["pixel_values"]) and s["prompt_index"] == again["prompt_index"]
    assert len({ds[e * 3 + 1]["prompt_index"] for e in range(40)}) > 10
    # the conditioning is the mask cropped like the image: 48x80 -> short side 32 -> 32x53 -> centre 32 columns
    mask = Image.open(pairs[1].mask_path).resize((53, 32), Image.Resampling.NEAREST)
    expected = torch.from_numpy((np.asarray(mask)[:, 10:42] > 0).astype(np.float32))
    assert torch.equal(cond[0], expected) or torch.equal(cond[0], expected.flip(-1))  # random h-flip


def test_draw_sampler_is_a_pure_function_of_the_micro_batch():
    s = DrawSampler(n=10, batch_size=2, seed=3)
    stream = iter(s)
    first = [next(stream) for _ in range(12)]
    assert s.batches_per_epoch == 5
    assert sorted(i for b in first[:5] for i in b) == list(range(10))  # epoch 0 covers every pair once
    assert sorted(i - 10 for b in first[5:10] for i in b) == list(range(10))  # epoch 1, draws 10..19
    assert list(DrawSampler(10, 2, 3, start=7).__iter__().__next__()) == first[7]
    # two processes split an epoch without overlap
    r0 = [DrawSampler(10, 2, 3, rank=0, world=2).batch(m) for m in range(2)]
    r1 = [DrawSampler(10, 2, 3, rank=1, world=2).batch(m) for m in range(2)]
    assert not set(sum(r0, [])) & set(sum(r1, []))
    with pytest.raises(ConfigError):
        DrawSampler(n=3, batch_size=2, seed=0, world=2)


def test_micro_batch_generator_depends_on_seed_rank_and_micro():
    def draw(*key):
        return torch.randn(4, generator=micro_batch_generator(*key))

    assert torch.equal(draw(0, 0, 5), draw(0, 0, 5))
    assert not torch.equal(draw(0, 0, 5), draw(0, 0, 6))
    assert not torch.equal(draw(0, 0, 5), draw(0, 1, 5))
    assert not torch.equal(draw(0, 0, 5), draw(1, 0, 5))


def test_bad_training_data_fails_before_training(tmp_path):
    root = write_pairs(tmp_path / "d", n=2, size=(40, 48))
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(root / "masks" / "m1.png")  # wrong size
    with pytest.raises(GlassgemError, match="m1"):
        training_pairs(root)
