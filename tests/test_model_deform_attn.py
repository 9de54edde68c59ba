"""Multi-scale deformable attention: the fast embedding-bag path equals the literal grid_sample path
(values and gradients), bilinear sampling is what it should be, and low precision runs."""

import math

import pytest
import torch
import torch.nn.functional as F

from glassgem.model.deform_attn import MSDeformAttn, bilinear_bags, level_starts, sample_grid

SHAPES = [(12, 10), (6, 5), (3, 3)]


def _attn(seed: int = 0, d: int = 32, heads: int = 4) -> MSDeformAttn:
    torch.manual_seed(seed)
    a = MSDeformAttn(d, n_levels=len(SHAPES), n_heads=heads, n_points=3)
    with torch.no_grad():  # make every parameter matter (init has zero offsets/attention weights)
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return a


def _inputs(b: int = 2, q: int = 7, d: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    query = torch.randn(b, q, d, generator=g)
    memory = torch.randn(b, s, d, generator=g)
    # boxes partly outside the map, so zero padding is exercised
    ref = torch.cat([torch.rand(b, q, 2, generator=g) * 1.4 - 0.2, torch.rand(b, q, 2, generator=g)], -1)
    return query, ref, memory


def test_bag_equals_grid_sample_forward_and_backward():
    a = _attn()
    query, ref, memory = _inputs()
    outs, grads = {}, {}
    for impl in ("grid_sample", "bag"):
        a.impl = impl
        a.zero_grad()
        q = query.clone().requires_grad_()
        m = memory.clone().requires_grad_()
        out = a(q, ref, m, SHAPES)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs[impl] = out.detach()
        grads[impl] = [q.grad, m.grad] + [p.grad.clone() for p in a.parameters()]
    assert outs["bag"].abs().max() > 0.1
    torch.testing.assert_close(outs["bag"], outs["grid_sample"], atol=2e-5, rtol=1e-5)
    for g_bag, g_grid in zip(grads["bag"], grads["grid_sample"]):
        torch.testing.assert_close(g_bag, g_grid, atol=1e-4, rtol=1e-4)


def test_sample_grid_matches_manual_bilinear():
    # one head, one level, one point: the sample at a pixel centre is that pixel, between two is the mean,
    # and a point half a pixel outside the map blends with zero padding
    h, w = 4, 5
    value = torch.arange(h * w, dtype=torch.float32).view(1, h * w, 1, 1) + 1.0  # B x S x M x D
    img = value.view(h, w)

    def at(x: float, y: float) -> float:
        loc = torch.tensor([x, y]).view(1, 1, 1, 1, 1, 2)
        attn = torch.ones(1, 1, 1, 1, 1)
        return sample_grid(value, [(h, w)], loc, attn).item()

    assert at((2 + 0.5) / w, (1 + 0.5) / h) == pytest.approx(img[1, 2].item())
    assert at((2 + 1.0) / w, (1 + 0.5) / h) == pytest.approx((img[1, 2] + img[1, 3]).item() / 2)
    assert at(0.0, (3 + 0.5) / h) == pytest.approx(img[3, 0].item() / 2)  # left half is padding


def test_bilinear_bags_weights_sum_to_attention_inside_the_map():
    loc = torch.rand(1, 3, 2, len(SHAPES), 2, 2) * 0.6 + 0.2  # all 4 corners inside even the 3x3 level
    attn = torch.rand(1, 3, 2, len(SHAPES), 2).softmax(-1)
    index, weight = bilinear_bags(SHAPES, loc, attn, rows_per_batch=sum(h * w for h, w in SHAPES))
    assert index.shape == weight.shape == (6, len(SHAPES) * 2 * 4)
    torch.testing.assert_close(weight.sum(-1), attn.view(6, -1).sum(-1))
    # every index lands in its own level
    starts = level_starts(SHAPES) + [sum(h * w for h, w in SHAPES)]
    per_level = index.view(6, 4, len(SHAPES), 2)  # bag entries are corners x levels x points
    for lvl in range(len(SHAPES)):
        rows = per_level[:, :, lvl]
        assert (rows >= starts[lvl]).all() and (rows < starts[lvl + 1]).all()


def test_init_is_deformable_detr():
    a = MSDeformAttn(64, n_levels=3, n_heads=8, n_points=4)
    assert torch.count_nonzero(a.sampling_offsets.weight) == 0
    assert torch.count_nonzero(a.attention_weights.weight) == 0
    assert torch.count_nonzero(a.attention_weights.bias) == 0
    bias = a.sampling_offsets.bias.view(8, 3, 4, 2)
    # head h points along angle 2πh/8, point i at (i+1) times a unit-square direction
    for h in range(8):
        angle = 2 * math.pi * h / 8
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for i in range(4):
            torch.testing.assert_close(bias[h, 1, i], direction * (i + 1))


@pytest.mark.parametrize("impl", ["bag", "grid_sample"])
def test_bf16_autocast_close_to_fp32(impl):
    a = _attn()
    a.impl = impl
    query, ref, memory = _inputs()
    with torch.no_grad():
        ref_out = a(query, ref, memory, SHAPES)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = a(query, ref, memory, SHAPES)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    rel = (out.float() - ref_out).norm() / ref_out.norm()
    assert rel < 0.03


def test_fp16_weights_run_on_cpu():
    a = _attn().half()
    query, ref, memory = _inputs()
    with torch.no_grad():
        out = a(query.half(), ref.half(), memory.half(), SHAPES)
        ref_out = _attn()(query, ref, memory, SHAPES)
    assert out.dtype == torch.float16
    assert F.cosine_similarity(out.float().flatten(), ref_out.flatten(), dim=0) > 0.999


def test_wrong_number_of_levels_is_a_clear_error():
    a = _attn()
    query, ref, memory = _inputs()
    with pytest.raises(ValueError, match="levels"):
        a(query, ref, memory[:, :120], SHAPES[:1])
