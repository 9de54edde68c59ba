"""Checkpoints: the original key map (GEM-Tiny and GEM-Base manifests), glassgem directories, safe
reading of torch/pickle files, clear errors for wrong or corrupt files, and `glassgem convert`."""

import ast
import dataclasses
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SHARED
from glassgem import GEM
from glassgem.cli import main
from glassgem.config import model_preset
from glassgem.errors import CheckpointError
from glassgem.hub import pretrained as gem_module
from glassgem.hub.files import read_weights, state_dict_bytes
from glassgem.hub.original import glassgem_to_original, original_key_to_glassgem

REF = SHARED / "reference"
needs_reference = pytest.mark.skipif(
    not (REF / "gem-tiny" / "model_official_format.pth").is_file(),
    reason=f"reference outputs of the original GEM not found under {REF}",
)


@pytest.fixture(scope="module")
def reference():
    """(path, original state dict, GEM loaded from it), loaded once for the module."""
    path = REF / "gem-tiny" / "model_official_format.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every key must be used: no missing/unexpected warning
        model = GEM.from_pretrained(path)
    return path, torch.load(path, map_location="cpu", weights_only=True)["model"], model


def _manifest(path: Path) -> dict[str, tuple[int, ...]]:
    """keys.txt: key<TAB>shape<TAB>dtype[<TAB>ALIAS_OF ...]"""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            out[key] = tuple(ast.literal_eval(shape))
    return out


def _debug(seed: int = 0, **overrides) -> GEM:
    torch.manual_seed(seed)
    model = GEM(dataclasses.replace(model_preset("debug"), **overrides))
    with torch.no_grad():  # no trivially zero/one tensors, so a round trip really is checked
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@needs_reference
@pytest.mark.parametrize("preset,encoder", [("gem-tiny", "tinyvit"), ("gem-base", "sam_vit_b")])
def test_every_original_key_maps_onto_the_model_with_its_shape(preset, encoder):
    manifest = _manifest(REF / preset / "keys.txt")
    model = GEM.from_config(preset)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in manifest.items():
        new = original_key_to_glassgem(key, encoder)
        if key == "criterion.empty_weight":
            assert new is None
            continue
        assert new in own, f"{key} -> {new} is not a {preset} parameter"
        assert own[new] == shape, f"{key}: original {shape}, glassgem {own[new]}"
    # and back: the reverse map writes exactly the original key set, aliases included
    back = glassgem_to_original(model.state_dict(), encoder, model.cfg.dec_layers)
    assert set(back) == set(manifest)
    assert all(tuple(back[k].shape) == manifest[k] for k in manifest)


@pytest.mark.slow
@needs_reference
def test_original_checkpoint_round_trips_through_glassgem_names(reference):
    _, original, model = reference
    assert model.cfg.encoder == "tinyvit" and model.cfg.num_queries == 100 and model.cfg.dec_layers == 9
    back = glassgem_to_original(model.state_dict(), "tinyvit", 9)
    assert set(back) == set(original)
    for k, v in original.items():
        if k != "criterion.empty_weight":  # a loss constant, not a weight (glassgem writes [1, 1, 0.1])
            assert torch.equal(back[k], v), k


@pytest.mark.slow
@needs_reference
def test_detectron2_pickle_with_numpy_arrays_loads(tmp_path, reference):
    _, original, model = reference
    pkl = tmp_path / "model_final.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(
            {
                "model": {k: v.numpy() for k, v in original.items()},
                "__author__": "torchvision",
                "matching_heuristics": True,
            },
            f,
        )
    a, b = GEM.from_pretrained(pkl).state_dict(), model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_pickles_that_run_code_are_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.x": _Evil(marker)}}, f, protocol=2)
    with pytest.raises(CheckpointError, match="evil") as e:
        GEM.from_pretrained(path)
    assert "refused" in str(e.value)
    assert not marker.exists()


def test_loading_functions_take_the_network_and_glassgem_gem_delegates_to_them(tmp_path):
    """hub.pretrained's functions load and save the bare network; glassgem.GEM (the one class above it) gets the
    same weights through its methods, and hub/ defines no model class of its own."""
    from glassgem.model import GEM as Network

    net = Network.from_config("debug")
    folder = gem_module.save_pretrained(net, tmp_path / "net")
    loaded = gem_module.from_pretrained(folder)
    assert type(loaded) is Network and not loaded.training
    user = GEM.from_pretrained(folder)
    assert type(user) is GEM and isinstance(user, Network)
    sd, sd2 = loaded.state_dict(), user.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert user.save_pretrained(tmp_path / "user") == tmp_path / "user"
    assert (tmp_path / "user" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    classes = [v for v in vars(gem_module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    assert classes == [Network]


def test_save_pretrained_round_trip_is_exact(tmp_path):
    model = _debug()
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = GEM.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    x = torch.rand(1, 3, 128, 96) * 255
    with torch.no_grad():
        assert torch.equal(model.semantic_scores(x), loaded.semantic_scores(x))


def test_state_dict_bytes_unties_shared_storage(tmp_path):
    base = torch.randn(4, 6)
    sd = {"a": base, "b": base, "c": base[1:3], "d": base.t()}  # aliases, a slice and a transposed view
    path = tmp_path / "t.safetensors"
    path.write_bytes(state_dict_bytes(sd))
    back = load_file(str(path))
    for k, v in sd.items():
        assert torch.equal(back[k], v)


def test_wrong_and_corrupt_files_name_the_file(tmp_path):
    model = _debug()
    model.save_pretrained(tmp_path / "ok")
    # truncated weights
    data = (tmp_path / "ok" / "model.safetensors").read_bytes()
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    (tmp_path / "trunc" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc"):
        GEM.from_pretrained(tmp_path / "trunc")
    # not a checkpoint at all
    (tmp_path / "image.pth").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="image.pth.*not a checkpoint"):
        GEM.from_pretrained(tmp_path / "image.pth")
    # a torch file of some other network
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth"):
        GEM.from_pretrained(tmp_path / "other.pth")
    # an original-looking file without a GEM decoder
    torch.save({"model": {"backbone.layers.0.x": torch.zeros(2)}}, tmp_path / "enc.pth")
    with pytest.raises(CheckpointError, match="enc.pth.*not a GEM checkpoint"):
        GEM.from_pretrained(tmp_path / "enc.pth")
    # weights of a differently shaped model
    _debug(num_queries=8).save_pretrained(tmp_path / "q8")
    (tmp_path / "ok" / "model.safetensors").write_bytes((tmp_path / "q8" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="ok.*shape"):
        GEM.from_pretrained(tmp_path / "ok")
    # directory without config, missing file
    (tmp_path / "noconf").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        GEM.from_pretrained(tmp_path / "noconf")
    with pytest.raises(CheckpointError, match="nothing.pth.*not found"):
        read_weights(tmp_path / "nothing.pth")


def test_missing_keys_refuse_unless_not_strict_and_unexpected_keys_warn(tmp_path):
    model = _debug()
    model.save_pretrained(tmp_path / "ckpt")
    sd = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    sd.pop("decoder.class_embed.bias")
    sd["decoder.something_new"] = torch.zeros(3)
    save_file(sd, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"ckpt.*1 of the model's .* not in it.*class_embed.bias.*strict=False"):
        GEM.from_pretrained(tmp_path / "ckpt")
    with pytest.warns(UserWarning, match=r"1 missing keys.*class_embed.bias.*1 unexpected keys.*something_new"):
        loose = GEM.from_pretrained(tmp_path / "ckpt", strict=False)
    assert torch.equal(loose.decoder.class_embed.weight, model.decoder.class_embed.weight)


def test_default_weights_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(gem_module, "DEFAULT_WEIGHTS", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="no default weights shipped yet"):
        GEM.from_pretrained()
    _debug().save_pretrained(tmp_path / "shipped")
    monkeypatch.setattr(gem_module, "DEFAULT_WEIGHTS", tmp_path / "shipped")
    assert GEM.from_pretrained().cfg.name == "debug"


@pytest.mark.slow
@needs_reference
def test_convert_cli(tmp_path, capsys, reference):
    src, _, model = reference
    assert main(["convert", str(src), str(tmp_path / "gem-tiny")]) == 0
    assert "21.6 M parameters" in capsys.readouterr().out
    a = GEM.from_pretrained(tmp_path / "gem-tiny").state_dict()
    b = model.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # a glassgem directory is not an original checkpoint
    assert main(["convert", str(tmp_path / "gem-tiny" / "model.safetensors"), str(tmp_path / "x")]) == 2
    assert "not an original GEM checkpoint" in capsys.readouterr().err


def test_read_weights_unwraps_and_converts_numpy(tmp_path):
    path = tmp_path / "w.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "iteration": 5}, f)
    sd = read_weights(path)
    assert list(sd) == ["a"] and torch.equal(sd["a"], torch.arange(6.0).view(2, 3))
