"""GEM criterion: every term against a direct computation, DN bookkeeping, term count, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from glassgem.config import apply_overrides, train_preset
from glassgem.train.losses import (
    GEMCriterion,
    box_losses,
    dice_loss,
    dn_indices,
    global_num_masks,
    sample_target_masks,
    sample_uncertain_points,
    sigmoid_bce_loss,
)
from glassgem.train.matcher import HungarianMatcher, point_sample
from glassgem.train.targets import targets_from_batch

S = 32  # full-resolution side; predictions are at S/4, DQS logits at S/16
TERMS = ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou")


def _hand_giou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def _semantic_batch() -> torch.Tensor:
    sem = torch.zeros(2, S, S, dtype=torch.long)
    sem[0, 4:20, 8:24] = 1  # background + glass
    sem[1, :, :] = 1
    sem[1, :, 24:] = 255  # glass + padding: one GT
    return sem


def _prediction(b: int, q: int, g: torch.Generator) -> dict:
    return {
        "pred_logits": torch.randn(b, q, 3, generator=g).requires_grad_(),
        "pred_masks": (3 * torch.randn(b, q, S // 4, S // 4, generator=g)).requires_grad_(),
        "pred_boxes": (0.2 + 0.6 * torch.rand(b, q, 4, generator=g)).requires_grad_(),
    }


def _outputs(layers: int = 9, q: int = 6, dn: bool = True, proposal: bool = True, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = _prediction(2, q, g)
    out["aux_outputs"] = [_prediction(2, q, g) for _ in range(layers)]
    out["proposal_cls_logits"] = torch.randn(2, 2, S // 16, S // 16, generator=g).requires_grad_() if proposal else None
    out["dn_outputs"] = None
    if dn:  # max 2 GT per image -> scalar 3, single_pad 2, P = 6
        d = _prediction(2, 6, g)
        d["aux_outputs"] = [_prediction(2, 6, g) for _ in range(layers)]
        d["scalar"], d["single_pad"] = 3, 2
        out["dn_outputs"] = d
    return out


def _criterion(**kw) -> GEMCriterion:
    kw.setdefault("num_points", 64)
    return GEMCriterion(**kw)


# ---- single terms ----------------------------------------------------------------------------------
def test_class_ce_with_no_object_weight_by_hand():
    logits = torch.tensor([[[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]]])  # [1, 3 queries, 3]
    targets = [{"labels": torch.tensor([0, 1])}]
    indices = [(torch.tensor([2, 0]), torch.tensor([0, 1]))]  # query 2 <- GT 0 (bg), query 0 <- GT 1 (glass)
    got = _criterion(eos_coef=0.1).loss_labels(logits, targets, indices)
    wanted = {0: 1, 1: 2, 2: 0}  # query -> class (query 1 unmatched -> no-object)
    weight = {0: 1.0, 1: 1.0, 2: 0.1}
    num = den = 0.0
    for qi, cls in wanted.items():
        row = logits[0, qi].tolist()
        nll = -(row[cls] - math.log(sum(math.exp(v) for v in row)))
        num += weight[cls] * nll
        den += weight[cls]
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_point_bce_and_dice_by_hand():
    x = torch.tensor([[0.5, -2.0, 1.0, 0.0], [3.0, 3.0, -1.0, -4.0]])
    t = torch.tensor([[1.0, 0.0, 0.5, 1.0], [1.0, 1.0, 0.0, 0.0]])
    num_masks = torch.tensor(4.0)
    bce = dice = 0.0
    for i in range(2):
        row = []
        for xv, tv in zip(x[i].tolist(), t[i].tolist()):
            p = 1 / (1 + math.exp(-xv))
            row.append(-(tv * math.log(p) + (1 - tv) * math.log(1 - p)))
        bce += sum(row) / len(row)
        p = [1 / (1 + math.exp(-v)) for v in x[i].tolist()]
        inter = sum(a * b for a, b in zip(p, t[i].tolist()))
        dice += 1 - (2 * inter + 1) / (sum(p) + sum(t[i].tolist()) + 1)
    assert sigmoid_bce_loss(x, t, num_masks).item() == pytest.approx(bce / 4, rel=1e-6)
    assert dice_loss(x, t, num_masks).item() == pytest.approx(dice / 4, rel=1e-6)


def test_box_l1_and_giou_by_hand():
    src = torch.tensor([[0.5, 0.5, 0.4, 0.2], [0.3, 0.6, 0.2, 0.5]])
    tgt = torch.tensor([[0.55, 0.45, 0.3, 0.3], [0.7, 0.2, 0.1, 0.1]])  # second pair does not overlap
    l1, giou = box_losses(src, tgt, torch.tensor(3.0))
    hand_l1 = sum(abs(a - b) for a, b in zip(src.flatten().tolist(), tgt.flatten().tolist())) / 3
    hand_giou = sum(1 - _hand_giou(src[i].tolist(), tgt[i].tolist()) for i in range(2)) / 3
    assert l1.item() == pytest.approx(hand_l1, rel=1e-6)
    assert giou.item() == pytest.approx(hand_giou, rel=1e-5)


def test_mask_losses_with_constant_predictions_do_not_depend_on_points():
    # Image 0 is all glass, image 1 all background: each has one GT mask that covers every pixel, so
    # every sampled point has label 1 and logit c, whatever points are drawn.
    sem = torch.stack([torch.ones(S, S, dtype=torch.long), torch.zeros(S, S, dtype=torch.long)])
    targets = targets_from_batch(sem)
    masks = torch.zeros(2, 3, S // 4, S // 4)
    masks[0, 1], masks[1, 2] = 1.5, -0.7
    indices = [(torch.tensor([1]), torch.tensor([0])), (torch.tensor([2]), torch.tensor([0]))]
    crit = _criterion(num_points=50)
    bce, dice = crit.loss_masks(masks, targets, indices, torch.tensor(2.0))
    n = 50
    hand_bce = (math.log1p(math.exp(-1.5)) + math.log1p(math.exp(0.7))) / 2
    hand_dice = (
        sum(1 - (2 * n * p + 1) / (n * p + n + 1) for p in (1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(0.7)))) / 2
    )
    assert bce.item() == pytest.approx(hand_bce, rel=1e-5)
    assert dice.item() == pytest.approx(hand_dice, rel=1e-5)


def test_zeros_point_padding_reproduces_the_original_edge_blend():
    sem = torch.ones(1, S, S, dtype=torch.long)
    targets = targets_from_batch(sem)
    masks = torch.full((1, 1, S // 4, S // 4), 2.0)
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    border, _ = _criterion(num_points=200).loss_masks(masks, targets, indices, torch.tensor(1.0))
    zeros, _ = _criterion(num_points=200, point_padding="zeros").loss_masks(masks, targets, indices, torch.tensor(1.0))
    assert border.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-5)
    # With zero padding, edge points see logits < 2 (and labels < 1), so the loss moves off that value.
    assert abs(zeros.item() - border.item()) > 1e-3


def test_importance_sampling_prefers_uncertain_points():
    w = 16
    logits = torch.full((1, 1, w, w), 10.0)
    logits[..., : w // 2] = 0.0  # left half maximally uncertain
    n = 400
    pts = sample_uncertain_points(logits, n, 3.0, 0.75, torch.Generator().manual_seed(0))
    assert pts.shape == (1, n, 2)
    uncertain, uniform = pts[0, :300], pts[0, 300:]
    # Points whose bilinear footprint stays inside the left half have logit exactly 0.
    assert (uncertain[:, 0] <= 0.5 - 0.5 / w).all()
    assert (uniform[:, 0] > 0.5).any() and (uniform[:, 0] < 0.5).any()


def test_target_sampling_matches_materialised_masks_with_repeats():
    targets = targets_from_batch(_semantic_batch())
    indices = dn_indices(targets, scalar=3, single_pad=2)
    m = sum(len(q) for q, _ in indices)
    pts = torch.rand(m, 20, 2, generator=torch.Generator().manual_seed(1))
    full = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).float()[:, None]
    assert torch.allclose(sample_target_masks(targets, indices, pts), point_sample(full, pts)[:, 0])


def test_proposal_loss_by_hand_for_both_target_definitions():
    sem = torch.zeros(1, S, S, dtype=torch.long)
    sem[0, :16, :16] = 1  # cell (0,0) glass
    sem[0, :16, 16:] = 255  # cell (0,1) padding
    sem[0, 16:, :8] = 1  # cell (1,0) half glass
    targets = targets_from_batch(sem)
    logits = torch.tensor([[[[1.0, -0.5], [0.3, 2.0]], [[-1.0, 0.5], [0.2, 0.1]]]])  # [1, 2, 2, 2]

    def ce(cells: dict) -> float:
        losses = []
        for (i, j), cls in cells.items():
            l0, l1 = logits[0, 0, i, j].item(), logits[0, 1, i, j].item()
            losses.append(-((l1 if cls else l0) - math.log(math.exp(l0) + math.exp(l1))))
        return sum(losses) / len(losses)

    sound = _criterion(dqs_target="sound").loss_proposal(logits, targets)
    assert sound.item() == pytest.approx(ce({(0, 0): 1, (1, 0): 1, (1, 1): 0}), rel=1e-6)  # (0,1) ignored
    orig = _criterion(dqs_target="original").loss_proposal(logits, targets)
    assert orig.item() == pytest.approx(ce({(0, 0): 1, (0, 1): 1, (1, 0): 0, (1, 1): 0}), rel=1e-6)


def test_proposal_loss_all_ignored_is_zero_not_nan():
    sem = torch.full((1, S, S), 255, dtype=torch.long)
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = _criterion().loss_proposal(logits, targets_from_batch(sem))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


# ---- bookkeeping -----------------------------------------------------------------------------------
def test_dn_indices_follow_the_contract():
    targets = [
        {"labels": torch.tensor([0, 1])},
        {"labels": torch.tensor([1])},
        {"labels": torch.zeros(0, dtype=torch.long)},
    ]
    (q0, g0), (q1, g1), (q2, g2) = dn_indices(targets, scalar=3, single_pad=2)
    assert q0.tolist() == [0, 1, 2, 3, 4, 5] and g0.tolist() == [0, 1, 0, 1, 0, 1]
    assert q1.tolist() == [0, 2, 4] and g1.tolist() == [0, 0, 0]
    assert q2.numel() == 0 and g2.numel() == 0


def test_dn_terms_use_fixed_assignment_and_scalar_normalisation():
    out = _outputs(layers=2)
    targets = targets_from_batch(_semantic_batch())  # image 0: GT [bg, glass]; image 1: GT [glass]
    terms = _criterion().compute_terms(out, targets)
    dn = out["dn_outputs"]
    num_masks, scalar, pad = 3.0, 3, 2
    l1 = 0.0
    ce_num = ce_den = 0.0
    for b, t in enumerate(targets):
        n = len(t["labels"])
        for qi in range(scalar * pad):
            j = qi % pad
            cls = int(t["labels"][j]) if j < n else 2  # padding slots of image 1 are no-object
            if j < n:
                l1 += (dn["pred_boxes"][b, qi] - t["boxes"][j]).abs().sum().item()
            w = 0.1 if cls == 2 else 1.0
            ce_num += w * -F.log_softmax(dn["pred_logits"][b, qi], -1)[cls].item()
            ce_den += w
    assert terms["loss_bbox_dn"].item() == pytest.approx(l1 / (num_masks * scalar), rel=1e-5)
    assert terms["loss_ce_dn"].item() == pytest.approx(ce_num / ce_den, rel=1e-5)


def test_global_num_masks_counts_and_clamps():
    targets = targets_from_batch(_semantic_batch())
    assert global_num_masks(targets, torch.device("cpu")).item() == 3.0
    assert global_num_masks([{"labels": torch.zeros(0)}], torch.device("cpu")).item() == 1.0


def test_global_num_masks_all_reduces_when_distributed(tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised by another test")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        targets = targets_from_batch(_semantic_batch())
        assert global_num_masks(targets, torch.device("cpu")).item() == 3.0  # sum over 1 process / 1
    finally:
        dist.destroy_process_group()


# ---- the whole criterion ---------------------------------------------------------------------------
def test_full_setting_has_96_terms_and_total_is_their_weighted_sum():
    crit = _criterion(class_weight=4.0)
    targets = targets_from_batch(_semantic_batch())
    raw = crit.compute_terms(_outputs(layers=9), targets, torch.Generator().manual_seed(0))
    assert len(raw) == 96
    expected = set(TERMS) | {n + "_dn" for n in TERMS} | {"loss_proposal"}
    expected |= {f"{n}_{i}" for n in TERMS for i in range(9)}
    expected |= {f"{n}_dn_{i}" for n in TERMS for i in range(1, 9)}
    assert set(raw) == expected
    weighted = crit.weight_terms(raw)
    base_weight = {
        "loss_ce": 4.0,
        "loss_mask": 5.0,
        "loss_dice": 5.0,
        "loss_bbox": 5.0,
        "loss_giou": 2.0,
        "loss_proposal": 80.0,
    }
    total = 0.0
    for name, value in raw.items():
        base = next(b for b in base_weight if name == b or name.startswith(b + "_"))
        assert weighted[name].item() == pytest.approx(value.item() * base_weight[base], rel=1e-6)
        total += value.item() * base_weight[base]
    assert weighted["loss"].item() == pytest.approx(total, rel=1e-5)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in raw.values())


@pytest.mark.parametrize(
    "layers,dn,proposal,weight,count",
    [
        (3, True, True, 80.0, 5 + 5 + 15 + 10 + 1),
        (3, True, True, 0.0, 35),
        (3, True, False, 80.0, 35),
        (2, False, True, 80.0, 5 + 10 + 1),
        (0, False, False, 80.0, 5),
    ],
)
def test_term_count_follows_layers_dn_and_dqs_switches(layers, dn, proposal, weight, count):
    crit = _criterion(proposal_weight=weight)
    out = _outputs(layers=layers, dn=dn, proposal=proposal)
    terms = crit(out, targets_from_batch(_semantic_batch()))
    assert len(terms) - 1 == count
    assert ("loss_proposal" in terms) == (proposal and weight != 0)


def test_aux_outputs_get_their_own_matching():
    out = _outputs(layers=2, dn=False)
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    # aux 1 = the final prediction with its queries shuffled: its own matching finds the same pairs.
    out["aux_outputs"][1] = {k: v.detach()[:, perm] for k, v in out.items() if k.startswith("pred_")}
    # Mask costs use fresh random points per call; without them the matching is deterministic.
    matcher = HungarianMatcher(cost_mask=0.0, cost_dice=0.0)
    terms = _criterion(matcher=matcher).compute_terms(out, targets_from_batch(_semantic_batch()))
    for name in ("loss_ce", "loss_bbox", "loss_giou"):
        assert terms[name + "_1"].item() == pytest.approx(terms[name].item(), rel=1e-6)
    assert terms["loss_ce_0"].item() != pytest.approx(terms["loss_ce"].item(), rel=1e-6)


def test_gradients_reach_every_supervised_tensor_and_skip_dn_aux_0():
    out = _outputs(layers=3)
    loss = _criterion()(out, targets_from_batch(_semantic_batch()))["loss"]
    loss.backward()
    dn = out["dn_outputs"]
    supervised = [out, *out["aux_outputs"], dn, *dn["aux_outputs"][1:]]
    for pred in supervised:
        for key in ("pred_logits", "pred_masks", "pred_boxes"):
            grad = pred[key].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key
    assert out["proposal_cls_logits"].grad.abs().sum() > 0
    assert all(dn["aux_outputs"][0][k].grad is None for k in ("pred_logits", "pred_masks", "pred_boxes"))


def test_generator_makes_the_loss_reproducible():
    crit = _criterion()
    targets = targets_from_batch(_semantic_batch())
    out = _outputs(layers=2)
    a = crit(out, targets, torch.Generator().manual_seed(7))
    b = crit(out, targets, torch.Generator().manual_seed(7))
    c = crit(out, targets, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["loss_mask"], c["loss_mask"])  # the points are random


def test_bf16_autocast_is_fp32_and_matches_fp32():
    crit = _criterion()
    targets = targets_from_batch(_semantic_batch())
    out = _outputs(layers=2)

    def cast(o, dtype):
        if isinstance(o, dict):
            return {k: cast(v, dtype) for k, v in o.items()}
        if isinstance(o, list):
            return [cast(v, dtype) for v in o]
        return o.detach().to(dtype) if isinstance(o, torch.Tensor) else o

    low = cast(out, torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = crit(low, targets, torch.Generator().manual_seed(3))
    ref = crit(cast(low, torch.float32), targets, torch.Generator().manual_seed(3))
    for k in ref:
        assert got[k].dtype == torch.float32
        assert got[k].item() == pytest.approx(ref[k].item(), rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("preset,loss_ce", [("gem-base", 4.0), ("gem-tiny", 5.0)])
def test_from_train_config_uses_the_presets_class_weight(preset, loss_ce):
    assert GEMCriterion.from_train_config(train_preset(preset)).weight_dict["loss_ce"] == loss_ce


def test_from_train_config_uses_preset_weights():
    tiny = GEMCriterion.from_train_config(train_preset("gem-tiny"))
    assert tiny.weight_dict["loss_proposal"] == 80.0 and tiny.num_points == 12544
    assert torch.allclose(tiny.empty_weight, torch.tensor([1.0, 1.0, 0.1]))
    assert tiny.matcher.num_points == 12544 and tiny.point_padding == tiny.matcher.point_padding == "border"
    cfg = apply_overrides(train_preset("gem-tiny"), ["point_padding=zeros", "dqs_target=original"])
    orig = GEMCriterion.from_train_config(cfg)
    assert orig.point_padding == orig.matcher.point_padding == "zeros" and orig.dqs_target == "original"
    with pytest.raises(ValueError, match="dqs_target"):
        GEMCriterion(dqs_target="bogus")


def _slice_outputs(out: dict, b: int) -> dict:
    """The outputs of image b alone, as a batch of one."""

    def one(pred: dict) -> dict:
        return {k: pred[k][b : b + 1] for k in ("pred_logits", "pred_masks", "pred_boxes")}

    sliced = one(out)
    sliced["aux_outputs"] = [one(a) for a in out["aux_outputs"]]
    sliced["proposal_cls_logits"] = None
    sliced["dn_outputs"] = None
    return sliced


def test_per_image_generators_make_each_image_independent_of_its_batch():
    """With one generator per image, an image's point draws do not depend on the other images of the
    batch, so a batch split across processes gets the same sums: loss_AB·N_AB = loss_A·N_A + loss_B·N_B."""
    out = _outputs(layers=2, dn=False, proposal=False)
    sem = _semantic_batch()
    sem[1, :, :12] = 0  # both images now have background and glass
    targets = targets_from_batch(sem)
    crit = _criterion()

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    both = crit.compute_terms(out, targets, gens(11, 12))
    alone = [crit.compute_terms(_slice_outputs(out, b), targets[b : b + 1], gens(11 + b)) for b in range(2)]
    n = [float(t["labels"].numel()) for t in targets]
    for name in ("loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_mask_1", "loss_dice_0"):
        joint = both[name] * sum(n)
        split = alone[0][name] * n[0] + alone[1][name] * n[1]
        assert torch.allclose(joint, split, rtol=1e-5, atol=1e-6), name
    # and a single shared generator does not have this property (the draws interleave across images)
    shared = crit.compute_terms(out, targets, torch.Generator().manual_seed(11))
    assert not torch.allclose(shared["loss_mask"] * sum(n), alone[0]["loss_mask"] * n[0] + alone[1]["loss_mask"] * n[1])
