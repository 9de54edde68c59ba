"""Checkpoint averaging (`glassgem average`): the mean of the weights, from every checkpoint format, and
clear errors for checkpoints of different models."""

import dataclasses
import json

import pytest
import torch

from glassgem import GEM
from glassgem.cli import main
from glassgem.config import TrainConfig, model_preset
from glassgem.errors import CheckpointError
from glassgem.train.average import AVERAGE_RECORD, average_checkpoints, average_state_dicts
from glassgem.train.checkpoint import save_checkpoint


def _perturb_(model: GEM, seed: int) -> GEM:
    """Give every floating-point tensor (BatchNorm statistics included) seeded new values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    return model.eval()


def _model(seed: int, preset: str = "debug", **changes) -> GEM:
    return _perturb_(GEM(dataclasses.replace(model_preset(preset), **changes)), seed)


def _training_checkpoint(tmp_path, model: GEM, step: int):
    state = {"step": step, "model": model.state_dict(), "config": TrainConfig(model=model.cfg).to_dict()}
    return save_checkpoint(tmp_path / "run", step, state, keep_last=0)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["debug", "gem-lite"])  # gem-lite: BatchNorm buffers
def test_average_is_the_elementwise_mean_over_every_format(tmp_path, preset):
    model = GEM(model_preset(preset))  # one build (EfficientNet's is slow); three sets of weights
    sa = {k: v.clone() for k, v in _perturb_(model, 0).state_dict().items()}
    model.save_pretrained(tmp_path / "a")
    sb = {k: v.clone() for k, v in _perturb_(model, 1).state_dict().items()}
    model.save_pretrained(tmp_path / "b")
    sc = {k: v.clone() for k, v in _perturb_(model, 2).state_dict().items()}
    c_ckpt = _training_checkpoint(tmp_path, model, 30)
    out = average_checkpoints([tmp_path / "a", tmp_path / "b", c_ckpt], tmp_path / "soup")

    soup = GEM.from_pretrained(out)
    assert soup.cfg == model.cfg
    ss = soup.state_dict()
    floats = [k for k in sa if sa[k].is_floating_point()]
    assert len(floats) > 20
    assert any("running_mean" in k for k in floats) == (preset == "gem-lite")
    for k in floats:
        torch.testing.assert_close(ss[k], (sa[k] + sb[k] + sc[k]) / 3, rtol=1e-6, atol=1e-6)
    for k in set(sa) - set(floats):  # integer buffers come from the first source
        assert torch.equal(ss[k], sa[k])
    assert set(ss) == set(sa)
    record = json.loads((out / AVERAGE_RECORD).read_text())
    assert [p.split("/")[-1] for p in record["sources"]] == ["a", "b", c_ckpt.name]
    if preset == "debug":  # and the averaged model runs
        with torch.no_grad():
            assert soup.semantic_scores(torch.rand(1, 3, 128, 128) * 255).shape == (1, 2, 128, 128)


def test_one_training_checkpoint_exports_unchanged(tmp_path):
    model = _model(3)
    out = average_checkpoints([_training_checkpoint(tmp_path, model, 10)], tmp_path / "export")
    loaded = GEM.from_pretrained(out)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_different_models_are_refused_naming_the_file(tmp_path):
    _model(0).save_pretrained(tmp_path / "a")
    _model(1, dec_layers=3).save_pretrained(tmp_path / "shallow")
    with pytest.raises(CheckpointError, match=r"shallow: not the same model .*dec_layers"):
        average_state_dicts([tmp_path / "a", tmp_path / "shallow"])
    with pytest.raises(CheckpointError, match="nothere: no such file"):
        average_state_dicts([tmp_path / "a", tmp_path / "nothere"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        average_state_dicts([tmp_path / "a", tmp_path / "junk.pt"])
    with pytest.raises(CheckpointError, match="at least one"):
        average_state_dicts([])


def test_checkpoints_differing_only_in_stochastic_depth_are_averaged(tmp_path):
    """drop_path_rate acts only in training: a fine-tune that switched it on holds the same tensors, so it
    can be averaged with its starting point; the soup keeps the first source's value and says so."""
    a, b = _model(0), _model(1, drop_path_rate=0.1)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    out = average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "soup")
    soup = GEM.from_pretrained(out)
    assert soup.cfg == a.cfg and soup.cfg.drop_path_rate == 0.0
    sa, sb, ss = a.state_dict(), b.state_dict(), soup.state_dict()
    for k in sa:
        if sa[k].is_floating_point():
            torch.testing.assert_close(ss[k], (sa[k] + sb[k]) / 2, rtol=1e-6, atol=1e-6)
    record = json.loads((out / AVERAGE_RECORD).read_text())
    assert record["config_differences_kept_from_first"] == ["drop_path_rate: 0.0 vs 0.1"]
    # anything else that differs is still refused
    _model(2, drop_path_rate=0.1, dec_layers=3).save_pretrained(tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"c: not the same model as .*a \(dec_layers: 2 vs 3\)$"):
        average_state_dicts([tmp_path / "a", tmp_path / "c"])


def test_checkpoints_differing_only_in_score_smoothing_are_averaged(tmp_path):
    """score_smoothing acts after the network: weights saved before the option (0, raw scores) average with
    a run of the smoothing gem-lite preset; the soup keeps the first source's value and says so."""
    a, b = _model(0), _model(1, score_smoothing=0.0625)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    out = average_checkpoints([tmp_path / "b", tmp_path / "a"], tmp_path / "soup")
    assert GEM.from_pretrained(out).cfg.score_smoothing == 0.0625
    record = json.loads((out / AVERAGE_RECORD).read_text())
    assert record["config_differences_kept_from_first"] == ["score_smoothing: 0.0625 vs 0.0"]


def test_average_cli(tmp_path, capsys):
    _model(0).save_pretrained(tmp_path / "a")
    _model(1).save_pretrained(tmp_path / "b")
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "soup")]) == 0
    assert "averaged 2 checkpoint(s)" in capsys.readouterr().out
    assert (tmp_path / "soup" / "model.safetensors").is_file()
    _model(1, dec_layers=3).save_pretrained(tmp_path / "c")
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "glassgem: error:" in err and "not the same model" in err
    assert not (tmp_path / "bad").exists()  # nothing half-written
