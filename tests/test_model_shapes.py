"""GEM forward at several sizes and batch sizes, the training output contract, denoising queries,
the semantic map, and clear errors for bad input. Mostly the small `debug` preset (fast)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from glassgem import GEM
from glassgem.config import model_preset
from glassgem.errors import ConfigError, DataError
from glassgem.model.box_ops import masks_to_boxes_cxcywh
from glassgem.model.decoder import build_dn_queries, dn_attn_mask, inverse_sigmoid, sine_embed
from glassgem.model.postprocess import semantic_map
from glassgem.model.query_selection import fuse_levels


def _debug(**overrides) -> GEM:
    torch.manual_seed(0)
    return GEM(dataclasses.replace(model_preset("debug"), **overrides))


def _targets(b: int, h: int, w: int, seed: int = 0) -> list[dict]:
    """Per image: background and/or glass masks (one image glass-only) with their tight boxes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(b):
        glass = torch.zeros(h, w, dtype=torch.bool)
        y0, x0 = int(torch.randint(0, h // 2, (1,), generator=g)), int(torch.randint(0, w // 2, (1,), generator=g))
        glass[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
        if i == b - 1:
            masks, labels = glass[None] | True, torch.tensor([1])  # all glass
        else:
            masks, labels = torch.stack([~glass, glass]), torch.tensor([0, 1])
        out.append({"labels": labels, "masks": masks, "boxes": masks_to_boxes_cxcywh(masks)})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("size,batch", [((384, 384), 1), ((512, 512), 1), ((480, 640), 1), ((384, 384), 3)])
def test_eval_forward_shapes(size, batch):
    model = _debug().eval()
    cfg = model.cfg
    h, w = size
    with torch.no_grad():
        out = model(torch.rand(batch, 3, h, w) * 255)
        sem = model.semantic_scores(torch.rand(batch, 3, h, w) * 255)
    q = cfg.num_queries
    assert out["pred_logits"].shape == (batch, q, cfg.num_classes + 1)
    assert out["pred_masks"].shape == (batch, q, h // 4, w // 4)
    assert out["pred_boxes"].shape == (batch, q, 4)
    assert out["proposal_cls_logits"].shape == (batch, 2, h // 16, w // 16)
    assert len(out["aux_outputs"]) == cfg.dec_layers
    assert all(a["pred_masks"] is None for a in out["aux_outputs"])  # eval: masks for the last layer only
    assert out["dn_outputs"] is None
    assert sem.shape == (batch, 2, h, w) and torch.isfinite(sem).all()
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_gem_tiny_forward_384():
    torch.manual_seed(0)
    model = GEM.from_config("gem-tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 384, 384) * 255)
    assert out["pred_logits"].shape == (1, 100, 3)
    assert out["pred_masks"].shape == (1, 100, 96, 96)
    assert len(out["aux_outputs"]) == 9
    assert out["proposal_cls_logits"].shape == (1, 2, 24, 24)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 21_606_861) < 0.001 * 21_606_861  # docs/original.md#parameter-counts


def test_training_forward_contract_and_gradients():
    model = _debug().train()
    cfg = model.cfg
    b, h, w = 2, 128, 160
    targets = _targets(b, h, w)
    out = model(torch.rand(b, 3, h, w) * 255, targets)
    q = cfg.num_queries
    assert set(out) == {"pred_logits", "pred_masks", "pred_boxes", "aux_outputs", "proposal_cls_logits", "dn_outputs"}
    assert len(out["aux_outputs"]) == cfg.dec_layers
    for o in [out] + out["aux_outputs"]:
        assert o["pred_logits"].shape == (b, q, 3)
        assert o["pred_masks"].shape == (b, q, h // 4, w // 4)
        assert o["pred_boxes"].shape == (b, q, 4)
    dn = out["dn_outputs"]
    assert dn["single_pad"] == 2 and dn["scalar"] == cfg.dn_num // 2
    p = dn["scalar"] * dn["single_pad"]
    assert len(dn["aux_outputs"]) == cfg.dec_layers
    for o in [dn] + dn["aux_outputs"]:
        assert o["pred_logits"].shape == (b, p, 3)
        assert o["pred_masks"].shape == (b, p, h // 4, w // 4)
        assert o["pred_boxes"].shape == (b, p, 4)
    loss = (
        sum(
            o["pred_logits"].sum() + o["pred_masks"].mean() + o["pred_boxes"].sum()
            for o in [out, dn] + out["aux_outputs"] + dn["aux_outputs"]
        )
        + out["proposal_cls_logits"].mean()
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_training_without_dn_keeps_label_enc_in_graph():
    model = _debug(dn="none").train()
    out = model(torch.rand(1, 3, 128, 128) * 255, _targets(1, 128, 128))
    assert out["dn_outputs"] is None
    out["pred_logits"].sum().backward()
    assert model.decoder.label_enc.weight.grad is not None


def test_learned_queries_when_dqs_is_off():
    model = _debug(use_dqs=False).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128) * 255)
    assert model.query_selection is None and model.decoder.query_feat is not None
    assert out["proposal_cls_logits"] is None
    assert out["pred_masks"].shape == (2, model.cfg.num_queries, 32, 32)


def test_native_multiscale_encoder_features():
    model = _debug(encoder_features="native").eval()
    assert model.pyramid is None
    with torch.no_grad():
        out = model(torch.rand(1, 3, 160, 224) * 255)
    assert out["pred_masks"].shape == (1, model.cfg.num_queries, 40, 56)


def test_folded_mask_head_equals_explicit_one():
    model = _debug().eval()
    x = torch.rand(2, 3, 160, 128) * 255
    with torch.no_grad():
        folded = model(x)
        model.fold_mask_head = False
        explicit = model(x)
    torch.testing.assert_close(folded["pred_masks"], explicit["pred_masks"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(folded["pred_logits"], explicit["pred_logits"])


def test_semantic_map_equals_upsample_then_sum():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 3, generator=g)
    masks = torch.randn(2, 7, 24, 20, generator=g) * 5
    for size in [(96, 80), (100, 61), (24, 20)]:
        fast = semantic_map(logits, masks, size, rows_per_tile=7)
        up = F.interpolate(masks, size=size, mode="bilinear", align_corners=False).sigmoid()
        naive = torch.einsum("bqc,bqhw->bchw", logits.softmax(-1)[..., :2], up)
        torch.testing.assert_close(fast, naive, atol=1e-5, rtol=1e-5)


def test_dn_queries_layout_without_noise():
    torch.manual_seed(0)
    label_enc = torch.nn.Embedding(2, 8)
    targets = [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.3, 0.4, 0.2, 0.1]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.6, 0.4, 0.2]])},
    ]
    dn = build_dn_queries(targets, label_enc, dn_num=10, noise_scale=0.0, num_classes=2, num_queries=4)
    assert (dn.scalar, dn.single_pad) == (5, 2)
    assert dn.content.shape == (2, 10, 8) and dn.anchors.shape == (2, 10, 4)
    for g in range(5):
        for b, t in enumerate(targets):
            for j, (lab, box) in enumerate(zip(t["labels"], t["boxes"])):
                torch.testing.assert_close(dn.content[b, g * 2 + j], label_enc.weight[lab])
                torch.testing.assert_close(dn.anchors[b, g * 2 + j], inverse_sigmoid(box))
        assert dn.content[1, g * 2 + 1].abs().sum() == 0  # image 1 has one GT: its second slot is padding
    mask = dn.attn_mask
    assert mask.shape == (14, 14)
    assert mask[10:, :10].all() and not mask[10:, 10:].any()  # matching queries never see DN ones
    assert not mask[:10, 10:].any()  # DN queries see matching ones
    assert not mask[2:4, 2:4].any() and mask[2:4, :2].all() and mask[2:4, 4:10].all()  # groups are isolated


def test_dn_noise_stays_in_range_and_none_without_gt():
    torch.manual_seed(0)
    label_enc = torch.nn.Embedding(2, 8)
    boxes = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    dn = build_dn_queries([{"labels": torch.tensor([1]), "boxes": boxes}], label_enc, 100, 0.4, 2, 4)
    sig = dn.anchors.sigmoid()
    assert ((sig >= 0) & (sig <= 1)).all() and not torch.allclose(sig, boxes.expand_as(sig))
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    assert build_dn_queries(empty, label_enc, 100, 0.4, 2, 4) is None
    assert dn_attn_mask(4, 2, 2, 2, torch.device("cpu")).shape == (6, 6)


def test_sine_embed_order_and_values():
    box = torch.tensor([[0.1, 0.7, 0.3, 0.9]])  # cx, cy, w, h
    emb = sine_embed(box, num_feats=8)
    assert emb.shape == (1, 32)
    # first block is y: channel 0 = sin(2π·cy), channel 1 = cos(2π·cy)
    assert emb[0, 0].item() == pytest.approx(torch.sin(torch.tensor(2 * torch.pi * 0.7)).item(), abs=1e-6)
    assert emb[0, 1].item() == pytest.approx(torch.cos(torch.tensor(2 * torch.pi * 0.7)).item(), abs=1e-6)
    assert emb[0, 8].item() == pytest.approx(torch.sin(torch.tensor(2 * torch.pi * 0.1)).item(), abs=1e-6)  # x


def test_fuse_levels_handles_odd_sizes():
    p4 = torch.randn(1, 4, 5, 7)
    fused = fuse_levels(torch.randn(1, 4, 3, 4), p4, torch.randn(1, 4, 11, 13))
    assert fused.shape == p4.shape


def test_bad_inputs_are_clear_errors():
    model = _debug().eval()
    with pytest.raises(DataError, match="multiple of 32"):
        model(torch.rand(1, 3, 100, 128))
    with pytest.raises(DataError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(3, 128, 128))
    with pytest.raises(DataError, match="targets"):
        model.train()(torch.rand(2, 3, 128, 128), _targets(1, 128, 128))
    small = GEM(dataclasses.replace(model_preset("debug"), num_queries=100)).eval()
    with pytest.raises(ConfigError, match="too small"):
        small(torch.rand(1, 3, 64, 64))


def test_bf16_autocast_runs():
    model = _debug().eval()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        sem = model.semantic_scores(x)
    assert sem.dtype == torch.float32 and torch.isfinite(sem).all()


def test_patch_conv_transpose_equals_torch_conv_transpose():
    from glassgem.model.pyramid import PatchConvTranspose2d

    torch.manual_seed(0)
    fast = PatchConvTranspose2d(6, 5, 2)
    ref = torch.nn.ConvTranspose2d(6, 5, 2, stride=2)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y_ref = fast(x), ref(x2)
    assert y.shape == (2, 5, 6, 8)
    torch.testing.assert_close(y, y_ref)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad)
    fast.impl = "conv"  # the export form: nn.ConvTranspose2d's own forward, the same numbers
    torch.testing.assert_close(fast(x.detach()), y.detach())


def test_semantic_scores_shortcut_equals_full_forward():
    model = _debug().eval()
    x = torch.rand(2, 3, 160, 192) * 255
    with torch.no_grad():
        out = model(x)
        full = semantic_map(out["pred_logits"], out["pred_masks"], (160, 192))
        torch.testing.assert_close(model.semantic_scores(x), full, atol=0, rtol=0)
        model.train()
        out = model(x)  # training mode: masks for every layer; semantic_scores uses the last
        torch.testing.assert_close(
            model.semantic_scores(x), semantic_map(out["pred_logits"], out["pred_masks"], (160, 192)), atol=0, rtol=0
        )


def test_dqs_ranking_breaks_exact_ties_towards_the_lower_index_and_keeps_strict_order():
    from glassgem.model.query_selection import ranking_key

    scores = torch.tensor([[0.7, 1.0, 0.9, 1.0, 1.0, 0.9 + 6e-8]], dtype=torch.float32)
    order = ranking_key(scores).topk(6, dim=1).indices[0].tolist()
    assert order == [1, 3, 4, 5, 2, 0]
