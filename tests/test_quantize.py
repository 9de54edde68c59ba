"""int8 ONNX graphs (glassgem.inference.quantize, `glassgem predict --onnx FILE --precision int8`,
`glassgem export onnx --precision int8`).

The mechanics on the debug model (which layers become int8, per-channel scales, metadata, errors) and the
accuracy bound on real photos with the shipped GEM-S: its int8 masks keep the IoU within 0.005 of fp32's
and agree with fp32's on >= 99% of the pixels (benchmarks/bench_int8.py measures the whole of gdd-dev/val).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx  # noqa: E402
import pytest
import torch

from conftest import run_cli  # noqa: E402
from glassgem import GEM, Predictor  # noqa: E402
from glassgem.data.layouts import find_pairs  # noqa: E402
from glassgem.errors import CheckpointError, ConfigError, GlassgemError  # noqa: E402
from glassgem.evaluation.metrics import GlassMetrics  # noqa: E402
from glassgem.inference.export import export_onnx  # noqa: E402
from glassgem.inference.onnx_runner import load_onnx_scorer  # noqa: E402
from glassgem.inference.quantize import META_PRECISION, META_WEIGHTS, quantize_int8, weight_nodes  # noqa: E402
from glassgem.io import load_mask  # noqa: E402

N_PHOTOS = 4


@pytest.fixture(scope="module")
def debug_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "debug.onnx"
    export_onnx(GEM.from_config("debug"), path, size=128, optimize=False)
    return path


# ------------------------------------------------------------------------------ mechanics
@pytest.mark.slow
def test_every_linear_layer_becomes_int8_with_one_scale_per_channel(debug_onnx) -> None:
    fp32 = onnx.load(str(debug_onnx))
    linear = weight_nodes(fp32)
    assert 0 < len(weight_nodes(fp32, "decoder.layers.0")) < len(linear)  # a scope selects a part
    for weight_type, onnx_type in (("u8", onnx.TensorProto.UINT8), ("s8", onnx.TensorProto.INT8)):
        data = quantize_int8(debug_onnx.read_bytes(), str(debug_onnx), weight_type=weight_type)
        int8 = onnx.load_model_from_string(data)
        integer = [n for n in int8.graph.node if n.op_type == "MatMulInteger"]
        assert len(integer) == len(linear)
        assert weight_nodes(int8) == []  # no fp32 weight matrix is left in a MatMul or Gemm
        init = {t.name: t for t in int8.graph.initializer}
        for node in integer:  # inputs: x, W (8-bit), x's zero point, W's zero points: one per output channel
            weight, zero_point = init[node.input[1]], init[node.input[3]]
            assert weight.data_type == onnx_type and list(zero_point.dims) == [weight.dims[1]]
        meta = {p.key: p.value for p in int8.metadata_props}
        assert meta[META_PRECISION] == "int8" and meta[META_WEIGHTS] == weight_type
        assert all(meta[p.key] == p.value for p in fp32.metadata_props)  # the glassgem metadata is kept


@pytest.mark.slow
def test_int8_scores_follow_fp32_and_an_int8_file_is_kept_as_it_is(debug_onnx, tmp_path) -> None:
    fp32 = load_onnx_scorer(debug_onnx, threads=2)
    int8 = load_onnx_scorer(debug_onnx, threads=2, precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 255
    a, b = fp32(x), int8(x)
    diff = (a - b).abs().max().item()
    assert 0 < diff <= 0.02 * a.abs().max().item()  # quantized (not identical), yet close
    data = quantize_int8(debug_onnx.read_bytes())
    assert quantize_int8(data) == data
    saved = tmp_path / "int8.onnx"
    saved.write_bytes(data)
    assert torch.equal(load_onnx_scorer(saved, threads=2)(x), b)  # run as it is, no second quantization


@pytest.mark.slow
def test_int8_graph_is_quantized_once_then_read_from_the_cache(debug_onnx, tmp_path, monkeypatch) -> None:
    import glassgem.inference.onnx_runner as runner

    monkeypatch.setenv("GLASSGEM_CACHE", str(tmp_path / "cache"))
    calls = []

    def counting(data: bytes, source: str = "") -> bytes:
        calls.append(source)
        return quantize_int8(data, source)

    monkeypatch.setattr(runner, "quantize_int8", counting)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 255
    first = load_onnx_scorer(debug_onnx, threads=2, precision="int8")(x)
    second = load_onnx_scorer(debug_onnx, threads=2, precision="int8")(x)
    assert len(calls) == 1 and torch.equal(first, second)
    assert len(list((tmp_path / "cache").glob("onnx-int8-*.bin"))) == 1
    monkeypatch.setenv("GLASSGEM_CACHE", "off")  # no cache: quantized at every load, same graph
    assert torch.equal(load_onnx_scorer(debug_onnx, threads=2, precision="int8")(x), first) and len(calls) == 2


@pytest.mark.slow
def test_cli_export_int8_writes_a_checked_int8_graph(tmp_path) -> None:
    torch.manual_seed(0)
    weights = GEM.from_config("debug").save_pretrained(tmp_path / "model")
    path = tmp_path / "debug.int8.onnx"
    rc, out, err = run_cli(
        "export",
        "onnx",
        "--weights",
        str(weights),
        "--out",
        str(path),
        "--size",
        "128",
        "--precision",
        "int8",
        "--no-optimize",
    )
    assert rc == 0, err
    assert "int8" in out and "quantized to int8: same class as PyTorch on" in out
    scorer = load_onnx_scorer(path)
    assert scorer.precision == "int8" and float(scorer.metadata["glassgem.verified_max_abs_diff"]) <= 1e-3
    assert any(n.op_type == "MatMulInteger" for n in onnx.load(str(path)).graph.node)


@pytest.mark.slow
def test_bad_precision_and_bad_files_are_one_line_errors(debug_onnx, tmp_path) -> None:
    with pytest.raises(ConfigError, match="int16"):
        load_onnx_scorer(debug_onnx, precision="int16")
    with pytest.raises(CheckpointError, match="junk.onnx: not a readable ONNX file"):
        quantize_int8(b"\x00junk" * 10, "junk.onnx")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")
    rc, _, err = run_cli("predict", str(photo), "--precision", "int8", "--dtype", "bf16", "--out", str(tmp_path / "o"))
    assert rc == 2 and "precision='int8'" in err and "dtype" in err and "Traceback" not in err
    with pytest.raises(GlassgemError, match="int16"):
        quantize_int8(debug_onnx.read_bytes(), weight_type="int16")
    rc, _, err = run_cli("predict", str(photo), "--precision", "int4", "--out", str(tmp_path / "o"))
    assert rc == 2 and "int4" in err


# ------------------------------------------------------------------------------ the accuracy bound
@pytest.fixture(scope="module")
def gem_s_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gem-s") / "gem-s.onnx"
    rc, out, err = run_cli("export", "onnx", "--weights", "gem-s", "--out", str(path))
    assert rc == 0, err
    return path


def _iou(masks: Path, pairs) -> float:
    metrics = GlassMetrics()
    for pair in pairs:
        metrics.update(load_mask(masks / f"{pair.stem}.png"), load_mask(pair.mask_path), name=pair.stem)
    return metrics.compute()["iou"]


@pytest.mark.slow
def test_gem_s_int8_predict_keeps_iou_and_masks_on_real_photos(gem_s_onnx, gdd_dev, tmp_path) -> None:
    """`glassgem predict --onnx gem-s.onnx --precision int8` on the first gdd-dev/val photos: the mean IoU
    within 0.005 of fp32's, the masks the same on >= 99% of all pixels (and int8 is not fp32 in disguise)."""
    pairs = find_pairs(gdd_dev, split="val")[:N_PHOTOS]
    photos = [str(p.image_path) for p in pairs]
    for precision in ("fp32", "int8"):
        rc, out, err = run_cli(
            "predict",
            *photos,
            "--onnx",
            str(gem_s_onnx),
            "--precision",
            precision,
            "--device",
            "cpu",
            "--out",
            str(tmp_path / precision),
            "--quiet",
        )
        assert rc == 0, err
    assert_int8_within_the_bound(tmp_path / "fp32", tmp_path / "int8", pairs)


def assert_int8_within_the_bound(fp32: Path, int8: Path, pairs) -> None:
    """The int8 masks' mean IoU within 0.005 of the fp32 masks', the masks the same on >= 99% of all pixels
    (and not on all of them: int8 is not fp32 in disguise)."""
    iou32, iou8 = _iou(fp32, pairs), _iou(int8, pairs)
    same = total = 0
    for pair in pairs:
        a, b = (load_mask(folder / f"{pair.stem}.png") for folder in (fp32, int8))
        same, total = same + int(np.count_nonzero(a == b)), total + a.size
    print(f"IoU fp32 {iou32:.4f} int8 {iou8:.4f}; masks agree on {100 * same / total:.3f}% of {total} pixels")
    assert abs(iou8 - iou32) <= 0.005
    assert 0.99 <= same / total < 1.0


@pytest.mark.slow
def test_default_predict_runs_gem_s_in_int8_within_the_accuracy_bound(gdd_dev, tmp_path) -> None:
    """`glassgem predict` with no options on a CPU (GEM-S, precision auto: the int8 graph of
    inference/weight_graphs.py) against `--precision fp32` on the first gdd-dev/val photos."""
    pairs = find_pairs(gdd_dev, split="val")[:N_PHOTOS]
    photos = [str(p.image_path) for p in pairs]
    for name, extra in (("auto", ()), ("fp32", ("--precision", "fp32"))):
        rc, out, err = run_cli("predict", *photos, "--device", "cpu", "--out", str(tmp_path / name), "--quiet", *extra)
        assert rc == 0, err
    assert Predictor(device="cpu").scorer.precision == "int8"  # what auto ran (read from the cache now)
    assert_int8_within_the_bound(tmp_path / "fp32", tmp_path / "auto", pairs)
