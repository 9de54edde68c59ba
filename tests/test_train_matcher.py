"""Hungarian matcher: point sampling, each cost against a direct computation, brute-force optimality."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from glassgem.train.matcher import HungarianMatcher, point_sample, uniform_points


def _pixel_centres(h: int, w: int) -> torch.Tensor:
    """[h*w, 2] (x, y) coordinates of the pixel centres of an h x w map, in [0, 1]."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], dim=1)


def _hand_giou(a, b) -> float:
    """GIoU of two cxcywh boxes, scalar arithmetic."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def _random_image(q: int, n: int, h: int = 6, w: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(q, 3, generator=g)
    masks = torch.randn(q, h, w, generator=g) * 3
    boxes = torch.rand(q, 2, generator=g) * 0.5 + 0.25
    boxes = torch.cat([boxes, torch.rand(q, 2, generator=g) * 0.4 + 0.1], 1)
    low = torch.rand(n, h, w, generator=g) > 0.5
    target = {
        "labels": torch.randint(0, 2, (n,), generator=g),
        "masks": low.repeat_interleave(4, 1).repeat_interleave(4, 2),  # full res = 4x the predictions
        "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.5 + 0.25, torch.rand(n, 2, generator=g) * 0.4 + 0.1], 1),
    }
    return logits, masks, boxes, target, low.float()


def test_point_sample_hits_pixel_values_at_centres_across_resolutions():
    low = torch.rand(2, 1, 5, 7)
    pts = _pixel_centres(5, 7)[None].expand(2, -1, -1)
    assert torch.allclose(point_sample(low, pts)[:, 0], low.flatten(2)[:, 0], atol=1e-6)
    # The same physical point on a 4x nearest-upsampled map gives the same value (align_corners=False).
    full = low.repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.allclose(point_sample(full, pts)[:, 0], low.flatten(2)[:, 0], atol=1e-6)


def test_point_sample_padding_at_the_outer_edge():
    m = torch.full((1, 1, 4, 4), 6.0)
    edge = torch.tensor([[[0.0, 0.5], [1.0, 0.5]]])  # left and right image borders
    assert torch.allclose(point_sample(m, edge)[0, 0], torch.tensor([6.0, 6.0]))  # "border" default
    assert torch.allclose(point_sample(m, edge, "zeros")[0, 0], torch.tensor([3.0, 3.0]))  # original


def test_uniform_points_follow_the_generator():
    a = uniform_points(2, 50, torch.device("cpu"), torch.Generator().manual_seed(3))
    b = uniform_points(2, 50, torch.device("cpu"), torch.Generator().manual_seed(3))
    c = uniform_points(2, 50, torch.device("cpu"), torch.Generator().manual_seed(4))
    assert a.shape == (2, 50, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 1
    # On the CPU the points are the generator's own stream (the accelerator path draws a seed first):
    # runs and checkpoints made before that path existed replay unchanged.
    assert torch.equal(a, torch.rand(2, 50, 2, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(uniform_points(2, 50, "cpu", torch.Generator().manual_seed(3)), a)  # str device too


def test_cost_matrix_matches_direct_computation():
    q, n, h, w = 4, 2, 6, 6
    logits, masks, boxes, target, low = _random_image(q, n, h, w)
    weights = dict(cost_class=4.0, cost_mask=5.0, cost_dice=5.0, cost_box=5.0, cost_giou=2.0)
    cost = HungarianMatcher(**weights).cost_matrix(logits, masks, boxes, target, _pixel_centres(h, w))
    assert cost.shape == (q, n)
    for i in range(q):
        for j in range(n):
            p = torch.sigmoid(logits[i, target["labels"][j]]).item()
            focal = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
            x, t = masks[i].flatten(), low[j].flatten()  # pixel centres: the values themselves
            bce = F.binary_cross_entropy_with_logits(x, t).item()
            s = x.sigmoid()
            dice = 1 - (2 * (s * t).sum().item() + 1) / (s.sum().item() + t.sum().item() + 1)
            l1 = (boxes[i] - target["boxes"][j]).abs().sum().item()
            giou = _hand_giou(boxes[i].tolist(), target["boxes"][j].tolist())
            expect = 4 * focal + 5 * bce + 5 * dice + 5 * l1 - 2 * giou
            assert cost[i, j].item() == pytest.approx(expect, rel=1e-4, abs=1e-4)


def _brute_force_min(cost: torch.Tensor) -> float:
    """Minimal total cost of assigning every column to a distinct row (Q >= n)."""
    q, n = cost.shape
    return min(sum(cost[r, j].item() for j, r in enumerate(rows)) for rows in itertools.permutations(range(q), n))


@pytest.mark.parametrize("q,n,seed", [(3, 3, 0), (5, 2, 1), (6, 3, 2), (4, 1, 3), (7, 2, 4)])
def test_assignment_is_optimal_against_brute_force(q, n, seed):
    logits, masks, boxes, target, _ = _random_image(q, n, seed=seed)
    matcher = HungarianMatcher(num_points=64)
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None], "pred_boxes": boxes[None]}
    [(rows, cols)] = matcher(outputs, [target], generator=torch.Generator().manual_seed(seed))
    assert rows.dtype == cols.dtype == torch.int64
    assert len(rows) == len(cols) == n and len(set(rows.tolist())) == n and sorted(cols.tolist()) == list(range(n))
    # Rebuild the same cost matrix: the matcher draws its points first from the same generator.
    points = uniform_points(1, 64, torch.device("cpu"), torch.Generator().manual_seed(seed))[0]
    cost = matcher.cost_matrix(logits, masks, boxes, target, points)
    assert cost[rows, cols].sum().item() == pytest.approx(_brute_force_min(cost), abs=1e-5)


def test_matches_the_query_that_reproduces_the_target():
    h = w = 8
    glass = torch.zeros(h, w, dtype=torch.bool)
    glass[2:6, 1:5] = True
    target = {
        "labels": torch.tensor([1]),
        "masks": glass.repeat_interleave(4, 0).repeat_interleave(4, 1)[None],
        "boxes": torch.tensor([[0.375, 0.5, 0.5, 0.5]]),
    }
    q = 5
    logits = torch.zeros(1, q, 3)
    masks = torch.full((1, q, h, w), -5.0)
    boxes = torch.tensor([[0.7, 0.7, 0.2, 0.2]]).repeat(1, q, 1)
    logits[0, 3, 1] = 6.0  # query 3: glass class, the glass mask, the glass box
    masks[0, 3][glass] = 5.0
    boxes[0, 3] = target["boxes"][0]
    [(rows, cols)] = HungarianMatcher(num_points=256)(
        {"pred_logits": logits, "pred_masks": masks, "pred_boxes": boxes}, [target]
    )
    assert rows.tolist() == [3] and cols.tolist() == [0]


def test_batch_with_empty_target_and_more_targets_than_queries():
    logits, masks, boxes, target, _ = _random_image(2, 3, seed=5)
    empty = {
        "labels": torch.zeros(0, dtype=torch.long),
        "masks": torch.zeros(0, 24, 24, dtype=torch.bool),
        "boxes": torch.zeros(0, 4),
    }
    outputs = {
        "pred_logits": logits[None].repeat(2, 1, 1),
        "pred_masks": masks[None].repeat(2, 1, 1, 1),
        "pred_boxes": boxes[None].repeat(2, 1, 1),
    }
    (r0, c0), (r1, c1) = HungarianMatcher(num_points=32)(outputs, [empty, target])
    assert r0.numel() == c0.numel() == 0
    assert len(r1) == 2 and len(set(c1.tolist())) == 2  # Q=2 < n=3: every query gets a distinct target


def test_bf16_inputs_under_autocast_give_fp32_matching():
    logits, masks, boxes, target, _ = _random_image(6, 2, seed=6)
    lo = {
        "pred_logits": logits[None].bfloat16(),
        "pred_masks": masks[None].bfloat16(),
        "pred_boxes": boxes[None].bfloat16(),
    }
    hi = {k: v.float() for k, v in lo.items()}
    matcher = HungarianMatcher(num_points=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = matcher(lo, [target], torch.Generator().manual_seed(0))
    ref = matcher(hi, [target], torch.Generator().manual_seed(0))
    assert [r.tolist() for r, _ in got] == [r.tolist() for r, _ in ref]
    assert [c.tolist() for _, c in got] == [c.tolist() for _, c in ref]
