"""Targets from semantic maps: per-class masks/boxes and the two DQS cell-label definitions."""

import numpy as np
import pytest
import torch

from conftest import GDD_DEV
from glassgem.errors import DataError
from glassgem.train.targets import dqs_target, targets_from_batch, targets_from_semantic

GDD = GDD_DEV / "val" / "masks"


def test_two_classes_with_padding():
    sem = torch.zeros(8, 10, dtype=torch.long)
    sem[2:5, 3:7] = 1  # glass rows 2..4, cols 3..6
    sem[:, 8:] = 255  # padding on the right
    t = targets_from_semantic(sem)
    assert t["labels"].tolist() == [0, 1]
    assert t["masks"].dtype == torch.bool and t["masks"].shape == (2, 8, 10)
    assert torch.equal(t["masks"][1], sem == 1)
    assert torch.equal(t["masks"][0], sem == 0)
    assert not t["masks"][:, :, 8:].any()  # padding in no mask
    # Glass box: x1=3, x2=6 (last index), y1=2, y2=4, normalised by W=10, H=8.
    cx, cy, w, h = (3 + 6) / 2 / 10, (2 + 4) / 2 / 8, (6 - 3) / 10, (4 - 2) / 8
    assert torch.allclose(t["boxes"][1], torch.tensor([cx, cy, w, h]))
    # Background box spans cols 0..7 (padding excluded) and all rows.
    assert torch.allclose(t["boxes"][0], torch.tensor([3.5 / 10, 3.5 / 8, 7 / 10, 7 / 8]))
    assert torch.equal(t["semantic"], sem)


def test_all_glass_and_all_padding():
    glass = torch.ones(6, 6, dtype=torch.long)
    t = targets_from_semantic(glass)
    assert t["labels"].tolist() == [1]
    assert t["masks"].shape == (1, 6, 6) and t["masks"].all()
    pad = torch.full((6, 6), 255, dtype=torch.long)
    t = targets_from_semantic(pad)
    assert t["labels"].numel() == 0 and t["masks"].shape == (0, 6, 6) and t["boxes"].shape == (0, 4)


def test_bad_values_and_shapes_are_data_errors():
    sem = torch.zeros(4, 4, dtype=torch.long)
    sem[0, 0] = 7
    with pytest.raises(DataError, match="7"):
        targets_from_semantic(sem)
    with pytest.raises(DataError, match="shape"):
        targets_from_semantic(torch.zeros(1, 4, 4, dtype=torch.long))


def test_batch_helper():
    sem = torch.zeros(3, 5, 5, dtype=torch.long)
    sem[1] = 1
    sem[2, :2] = 1
    out = targets_from_batch(sem)
    assert [t["labels"].tolist() for t in out] == [[0], [1], [0, 1]]


def _map_32(cells: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
    sem = torch.zeros(32, 32, dtype=torch.long)
    for (i, j), block in cells.items():
        sem[16 * i : 16 * i + 16, 16 * j : 16 * j + 16] = block
    return sem


def _block(glass: int, pad: int) -> torch.Tensor:
    """A 16x16 cell with `glass` glass pixels, then `pad` padding pixels, the rest background."""
    flat = torch.zeros(256, dtype=torch.long)
    flat[:glass] = 1
    flat[glass : glass + pad] = 255
    return flat.view(16, 16)


def test_dqs_target_sound_and_original_on_mixed_map():
    sem = _map_32(
        {
            (0, 0): _block(glass=256, pad=0),  # all glass
            (0, 1): _block(glass=100, pad=56),  # 100 of 200 valid are glass: exactly half -> glass
            (1, 0): _block(glass=99, pad=57),  # 99 of 199 valid: under half -> background
            (1, 1): _block(glass=10, pad=129),  # more than half padding -> ignored (sound)
        }
    )
    sound = dqs_target(sem[None], (2, 2), "sound")[0]
    assert sound.tolist() == [[1, 1], [0, -1]]
    # Original: first present class is background (0); cell = 1 only if it has no background at all.
    orig = dqs_target(sem[None], (2, 2), "original")[0]
    assert orig.tolist() == [[1, 0], [0, 0]]


def test_dqs_original_counts_padding_as_glass_and_all_glass_as_background():
    pad_and_glass = _map_32({(0, 0): _block(glass=0, pad=256), (0, 1): _block(glass=200, pad=56)})
    orig = dqs_target(pad_and_glass[None], (2, 2), "original")[0]
    assert orig.tolist() == [[1, 1], [0, 0]]  # padding-only cell is "glass" in the original
    sound = dqs_target(pad_and_glass[None], (2, 2), "sound")[0]
    assert sound.tolist() == [[-1, 1], [0, 0]]

    all_glass = torch.ones(1, 32, 32, dtype=torch.long)
    assert dqs_target(all_glass, (2, 2), "original").eq(0).all()  # mask[0] is the glass mask
    assert dqs_target(all_glass, (2, 2), "sound").eq(1).all()


def test_dqs_target_batch_and_bad_mode():
    sem = torch.stack([torch.zeros(32, 32, dtype=torch.long), torch.ones(32, 32, dtype=torch.long)])
    assert dqs_target(sem, (2, 2)).shape == (2, 2, 2)
    assert dqs_target(sem, (2, 2))[1].eq(1).all() and dqs_target(sem, (2, 2))[0].eq(0).all()
    with pytest.raises(ValueError, match="dqs_target"):
        dqs_target(sem, (2, 2), "nope")


@pytest.mark.skipif(
    not GDD.is_dir(), reason=f"real GDD masks not found at {GDD} (set GLASSGEM_SHARED to the shared folder)"
)
def test_real_gdd_mask_targets():
    from glassgem.io import load_mask

    path = sorted(GDD.glob("*.png"))[0]
    sem = torch.from_numpy(np.asarray(load_mask(path)).astype(np.int64))
    t = targets_from_semantic(sem)
    # One mask per present class; together they tile the image exactly once.
    assert t["masks"].sum(0).eq(1).all()
    assert ((t["boxes"] >= 0) & (t["boxes"] <= 1)).all()
    glass = (t["labels"] == 1).nonzero()
    if glass.numel():
        ys, xs = (sem == 1).nonzero(as_tuple=True)
        hgt, wid = sem.shape
        expect = torch.tensor(
            [
                (xs.min() + xs.max()) / 2 / wid,
                (ys.min() + ys.max()) / 2 / hgt,
                (xs.max() - xs.min()) / wid,
                (ys.max() - ys.min()) / hgt,
            ],
            dtype=torch.float32,
        )
        assert torch.allclose(t["boxes"][glass[0, 0]], expect, atol=1e-6)
