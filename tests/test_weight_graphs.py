"""Weights run as int8 onnxruntime graphs (glassgem.inference.weight_graphs; `glassgem predict --precision`):
which precision "auto" picks, the graph cache (a miss builds, a hit reads, a broken entry is rebuilt, an
unusable cache folder still predicts) and the int8 weights' type per CPU. The accuracy bound of the default
path on real photos is in test_quantize.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import glassgem.inference.export as export  # noqa: E402
from conftest import run_cli  # noqa: E402
from glassgem import GEM, Predictor  # noqa: E402
from glassgem.errors import ConfigError  # noqa: E402
from glassgem.inference.onnx_runner import OnnxScorer  # noqa: E402
from glassgem.inference.quantize import int8_weight_type, quantizer_version  # noqa: E402
from glassgem.inference.weight_graphs import auto_precision, weights_graph  # noqa: E402
from glassgem.io import load_mask  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return GEM.from_config("debug").save_pretrained(tmp_path_factory.mktemp("graphs") / "debug")  # 128² inputs


@pytest.fixture()
def exports(monkeypatch) -> list[str]:
    """Counts the exports that weights_graph runs (it imports export_onnx when it builds)."""
    calls: list[str] = []
    real = export.export_onnx

    def counting(model, out, **kwargs):
        calls.append(str(kwargs.get("precision")))
        return real(model, out, optimize=False, **kwargs)

    monkeypatch.setattr(export, "export_onnx", counting)
    return calls


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(seed)) * 255


# ------------------------------------------------------------------------------ the int8 weights' type
def test_int8_weights_are_signed_only_where_the_cpu_has_vnni() -> None:
    assert int8_weight_type("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n") == "s8"
    assert int8_weight_type("flags\t\t: fpu avx2 avx_vnni fma\n") == "s8"
    assert int8_weight_type("flags : fpu sse2 avx2 fma avx512f avx512bw\n") == "u8"  # AVX-512 before VNNI
    assert int8_weight_type("Features : fp asimd asimddp\n") == "u8"  # no x86 flags line: the safe type
    assert quantizer_version("s8") != quantizer_version("u8")  # a cached graph is per type


# ------------------------------------------------------------------------------ which precision "auto" picks
def test_auto_is_int8_only_for_the_shipped_gem_s_on_a_cpu_in_fp32(weights, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GLASSGEM_CACHE", str(tmp_path / "cache"))
    assert auto_precision(None, "cpu") == "int8"  # the shipped default
    assert auto_precision("gem-s", "cpu") == "int8"
    assert auto_precision("gem-lite", "cpu") == "fp32"  # its time is in convolutions, which stay fp32
    assert auto_precision(str(weights), "cpu") == "fp32"  # weights nobody measured in int8
    assert auto_precision(None, "cuda") == "fp32"
    assert auto_precision(None, "cpu", dtype="bf16") == "fp32"
    assert auto_precision(None, "cpu", smoothing=0.0) == "fp32"
    monkeypatch.setenv("GLASSGEM_CACHE", "off")  # the export would run at every start: stay with PyTorch
    assert auto_precision(None, "cpu") == "fp32"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GLASSGEM_CACHE", str(blocker / "cache"))  # a cache folder that cannot be made
    assert auto_precision(None, "cpu") == "fp32"


def test_a_gem_model_object_runs_in_pytorch_and_refuses_int8(weights) -> None:
    model = GEM.from_pretrained(weights)
    predictor = Predictor(model, device="cpu")  # auto: a model in hand stays a PyTorch model
    assert not isinstance(predictor.scorer, OnnxScorer)
    with pytest.raises(ConfigError, match="precision='int8'.*GEM"):
        Predictor(model, precision="int8")
    with pytest.raises(ConfigError, match="precision='int4'"):
        Predictor(str(weights), precision="int4")
    with pytest.raises(ConfigError, match="dtype"):
        Predictor(str(weights), precision="int8", dtype="bf16")
    with pytest.raises(ConfigError, match="device='cuda'"):
        Predictor(str(weights), precision="int8", device="cuda")


# ------------------------------------------------------------------------------ the graph cache
@pytest.mark.slow
def test_int8_graph_is_built_once_then_read_and_follows_fp32(weights, exports, monkeypatch, tmp_path) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GLASSGEM_CACHE", str(cache))
    x = _images()
    int8 = Predictor(str(weights), precision="int8")
    assert isinstance(int8.scorer, OnnxScorer) and int8.scorer.precision == "int8" and exports == ["int8"]
    again = Predictor(str(weights), precision="int8")  # a hit: no second export
    assert exports == ["int8"] and torch.equal(int8.score(x), again.score(x))
    assert len(list(cache.glob("weights-graph-int8-*.bin"))) == 1
    fp32 = Predictor(str(weights), precision="fp32").score(x)
    diff = (int8.score(x) - fp32).abs().max().item()
    assert 0 < diff <= 0.05 * fp32.abs().max().item()  # quantized, not the same graph, yet close
    graph = Predictor(str(weights), precision="fp32", device="cpu")
    assert not isinstance(graph.scorer, OnnxScorer)  # fp32 weights stay in PyTorch


@pytest.mark.slow
def test_a_broken_entry_is_rebuilt_and_new_weights_get_a_new_graph(weights, exports, monkeypatch, tmp_path) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GLASSGEM_CACHE", str(cache))
    x = _images(1, seed=3)
    first = weights_graph(str(weights), "int8")(x)
    (entry,) = cache.glob("weights-graph-int8-*.bin")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a torn write
    assert torch.equal(weights_graph(str(weights), "int8")(x), first) and len(exports) == 2
    assert entry.stat().st_size > 1000 and len(list(cache.glob("weights-graph-int8-*.bin"))) == 1
    torch.manual_seed(1)
    other_folder = GEM.from_config("debug").save_pretrained(tmp_path / "other")
    weights_graph(str(other_folder), "int8")
    assert len(exports) == 3 and len(list(cache.glob("weights-graph-int8-*.bin"))) == 2


@pytest.mark.slow
def test_an_unusable_cache_folder_still_predicts(weights, exports, monkeypatch, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GLASSGEM_CACHE", str(blocker / "cache"))  # cannot be made: a file is in the way
    masks = Predictor(str(weights), precision="int8").predict(np.zeros((100, 140, 3), np.uint8))
    assert masks.shape == (100, 140) and exports == ["int8"]
    Predictor(str(weights), precision="int8")
    assert exports == ["int8", "int8"]  # made in memory each time, nothing written
    assert blocker.read_text() == ""


@pytest.mark.slow
def test_cli_predict_precision_int8_writes_masks_and_evaluate_takes_it(weights, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GLASSGEM_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    for precision in ("int8", "fp32"):
        rc, out, err = run_cli(
            "predict",
            str(photos),
            "--weights",
            str(weights),
            "--precision",
            precision,
            "--out",
            str(tmp_path / precision),
            "--quiet",
        )
        assert rc == 0, err
        assert sorted(p.name for p in (tmp_path / precision).glob("*.png")) == ["p0.png", "p1.png"]
    assert load_mask(tmp_path / "int8" / "p0.png").shape == (90, 120)
