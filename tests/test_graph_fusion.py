"""graph_fusion.py: exported ViT attention and GELU become onnxruntime's MultiHeadAttention and Gelu nodes with
the same numbers; graphs without them are left alone. And the queries-kept approximation of the semantic map
(postprocess.top_queries, GEM.semantic_scores(max_queries=...), export's max_queries)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from glassgem import GEM
from glassgem.errors import ConfigError
from glassgem.inference.export import export_onnx, load_onnx_scorer
from glassgem.inference.graph_fusion import fuse_for_onnxruntime
from glassgem.model.encoders.dinov2 import Block
from glassgem.model.postprocess import semantic_scores_from_queries, top_queries


def _export(module: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    program = torch.onnx.export(module, (x,), dynamo=True, opset_version=18, verbose=False, report=False)
    return program.model_proto


def _run(proto: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.fixture(scope="module")
def two_blocks() -> tuple[nn.Module, torch.Tensor, onnx.ModelProto]:
    torch.manual_seed(0)
    blocks = nn.Sequential(Block(32, 4, 4.0), Block(32, 4, 4.0)).eval()
    for block in blocks:
        block.ls1.gamma.data.fill_(1.0)  # DINOv2's 1e-5 would hide the attention from the comparison
        block.ls2.gamma.data.fill_(1.0)
    x = torch.randn(2, 17, 32)
    return blocks, x, _export(blocks, x)


def test_vit_attention_and_gelu_fuse_with_the_same_numbers(two_blocks) -> None:
    blocks, x, proto = two_blocks
    fused = onnx.ModelProto()
    fused.CopyFrom(proto)
    assert fuse_for_onnxruntime(fused) == {"attention": 2, "gelu": 2}
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("MultiHeadAttention") == 2 and ops.count("Gelu") == 2
    assert "Softmax" not in ops and "Erf" not in ops  # the replaced nodes are gone, not left beside
    square = {t.name for t in fused.graph.initializer if list(t.dims) == [32, 32]}
    projections = [n for n in fused.graph.node if n.op_type == "MatMul" and n.input[1] in square]
    assert len(projections) == 2 * 4 and "Split" not in ops  # q, k, v (cut from qkv) and proj in each block
    names = {t.name for t in fused.graph.initializer}
    assert names <= {i for n in fused.graph.node for i in n.input}  # no constant left unused
    with torch.no_grad():
        ref = blocks(x).numpy()
    np.testing.assert_allclose(_run(proto, x), ref, atol=1e-4)
    np.testing.assert_allclose(_run(fused, x), ref, atol=1e-4)


def test_a_graph_without_the_patterns_is_left_as_it_is() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 8), nn.Softmax(-1), nn.Tanh()).eval()  # a Softmax, no attention
    proto = _export(module, torch.randn(3, 8))
    before = proto.SerializeToString()
    assert fuse_for_onnxruntime(proto) == {"attention": 0, "gelu": 0}
    assert proto.SerializeToString() == before


def test_top_queries_keeps_the_most_probable_and_bounds_the_change() -> None:
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 10, 3) * 3, torch.randn(2, 10, 8, 8) * 4
    same = top_queries(logits, masks, 10)
    assert same[0] is logits and same[1] is masks
    kept_logits, kept_masks = top_queries(logits, masks, 4)
    mass = logits.softmax(-1)[..., :-1].sum(-1)
    for b in range(2):
        order = mass[b].argsort(descending=True)[:4]
        torch.testing.assert_close(kept_logits[b], logits[b, order])
        torch.testing.assert_close(kept_masks[b], masks[b, order])
    full = semantic_scores_from_queries(logits, masks, (32, 32))
    part = semantic_scores_from_queries(kept_logits, kept_masks, (32, 32))
    left_out = mass.sort(-1, descending=True).values[:, 4:].sum(-1)  # B
    change = (full - part).abs().flatten(1).max(1).values
    assert (change > 0).all() and (change <= left_out + 1e-6).all()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="max_queries"):
            top_queries(logits, masks, bad)


def test_export_with_max_queries_matches_the_models_own_approximation(tmp_path) -> None:
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    report = export_onnx(model, tmp_path / "top.onnx", size=128, max_queries=3)
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-3
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        approx, full = model.semantic_scores(x, max_queries=3), model.semantic_scores(x)
    got = load_onnx_scorer(tmp_path / "top.onnx")(x)
    torch.testing.assert_close(got, approx, atol=1e-3, rtol=0)
    assert (approx - full).abs().max() > 1e-3  # three queries are not all of them
    with pytest.raises(ConfigError, match="max_queries"):
        export_onnx(model, tmp_path / "bad.onnx", size=128, max_queries=0)
