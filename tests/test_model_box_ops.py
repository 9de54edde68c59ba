"""Box conversions and overlaps against hand-computed values."""

import pytest
import torch

from glassgem.model.box_ops import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes_cxcywh,
)


def test_conversions_by_hand_and_round_trip():
    cxcywh = torch.tensor([[0.5, 0.4, 0.2, 0.6]])
    assert torch.allclose(box_cxcywh_to_xyxy(cxcywh), torch.tensor([[0.4, 0.1, 0.6, 0.7]]))
    boxes = torch.rand(2, 5, 4)  # any leading dims
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes, atol=1e-6)


def test_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]])
    # Overlap 1, union 7; hull 3x3 = 9.  Disjoint: IoU 0, union 5, hull 5x2 = 10.
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 0.0]]))
    assert torch.allclose(generalized_box_iou(a, b), torch.tensor([[1 / 7 - 2 / 9, 0 - 5 / 10]]))


def test_masks_to_boxes_convention():
    masks = torch.zeros(3, 4, 8, dtype=torch.bool)
    masks[0] = True  # whole image: x 0..7, y 0..3 (last index, not +1)
    masks[1, 1:3, 2:5] = True  # x 2..4, y 1..2
    boxes = masks_to_boxes_cxcywh(masks)
    assert boxes.dtype == torch.float32
    assert torch.allclose(boxes[0], torch.tensor([3.5 / 8, 1.5 / 4, 7 / 8, 3 / 4]))
    assert torch.allclose(boxes[1], torch.tensor([3 / 8, 1.5 / 4, 2 / 8, 1 / 4]))
    assert torch.equal(boxes[2], torch.zeros(4))  # empty mask
    assert masks_to_boxes_cxcywh(torch.zeros(0, 4, 8, dtype=torch.bool)).shape == (0, 4)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
def test_masks_to_boxes_accepts_integer_masks(dtype):
    m = torch.zeros(1, 10, 10, dtype=dtype)
    m[0, 5, 5] = 1
    assert torch.allclose(masks_to_boxes_cxcywh(m), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
