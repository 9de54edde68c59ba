"""`glassgem data mix`: one training folder from several labelled sets, each listed K times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glassgem.cli import main
from glassgem.data.layouts import find_pairs
from glassgem.data.mix import Part, build_mix, parse_part
from glassgem.errors import ConfigError, DataError
from glassgem.io import load_mask, save_image, save_mask


def _set(root, stems, glass):
    for i, stem in enumerate(stems):
        mask = np.zeros((20, 30), np.uint8)
        mask[:, :glass] = 1
        save_image(root / "images" / f"{stem}.jpg", np.full((20, 30, 3), 10 * i, np.uint8))
        save_mask(root / "masks" / f"{stem}.png", mask)
    return root


def test_parse_part_reads_folder_count_and_split():
    assert parse_part("a/b") == Part(folder=Path("a/b"), times=1, split=None)
    assert parse_part("a:8").times == 8
    part = parse_part("gdd:2:train")
    assert (part.times, part.split) == (2, "train")
    for bad, what in (("a:x", "whole number"), ("a:0", "at least 1"), (":3", "DIR")):
        with pytest.raises(ConfigError, match=what):
            parse_part(bad)


def test_mix_lists_each_set_k_times_with_unique_names_and_matching_masks(tmp_path):
    a = _set(tmp_path / "gdd", ["x", "y"], glass=10)
    b = _set(tmp_path / "scenes", ["x"], glass=0)  # the same stem as a set of `a`: must not collide
    record = build_mix([Part(a), Part(b, times=3)], tmp_path / "mix")
    assert record["files"] == 5 and [s["files"] for s in record["sets"]] == [2, 3]
    pairs = find_pairs(tmp_path / "mix")
    assert len(pairs) == 5 and len({p.stem for p in pairs}) == 5
    from_b = [p for p in pairs if "scenes" in p.stem]
    assert sorted(p.stem.rsplit("_", 1)[1] for p in from_b) == ["r0", "r1", "r2"]
    for p in pairs:  # links to the originals, each image with its own set's mask
        assert p.image_path.is_symlink()
        glass = load_mask(p.mask_path).sum()
        assert glass == (0 if "scenes" in p.stem else 20 * 10)
    assert json.loads((tmp_path / "mix" / "mix.json").read_text()) == record


def test_mix_copies_when_asked_and_reads_a_split_of_a_dataset(tmp_path):
    _set(tmp_path / "gdd" / "train", ["a", "b"], glass=5)
    _set(tmp_path / "gdd" / "val", ["c"], glass=5)
    record = build_mix([parse_part(f"{tmp_path / 'gdd'}:1:train")], tmp_path / "mix", copy=True)
    pairs = find_pairs(tmp_path / "mix")
    assert record["files"] == 2 and not any(p.image_path.is_symlink() for p in pairs)
    assert sorted(p.stem.split("__")[1] for p in pairs) == ["a", "b"]


def test_mix_refuses_a_filled_output_and_a_bad_set_before_writing(tmp_path):
    a = _set(tmp_path / "a", ["x"], glass=3)
    build_mix([Part(a)], tmp_path / "mix")
    with pytest.raises(DataError, match="already holds files"):
        build_mix([Part(a)], tmp_path / "mix")
    (tmp_path / "orphan" / "images").mkdir(parents=True)
    save_image(tmp_path / "orphan" / "images" / "z.jpg", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "orphan" / "masks").mkdir()
    with pytest.raises(DataError, match="without a mask"):
        build_mix([Part(a), Part(tmp_path / "orphan")], tmp_path / "mix2")
    assert not (tmp_path / "mix2" / "images").exists()


def test_mix_command_prints_the_counts_and_refuses_writing_into_a_set(tmp_path, capsys):
    a = _set(tmp_path / "a", ["x", "y"], glass=3)
    out = tmp_path / "m"
    assert main(["data", "mix", f"{a}:2", "--out", str(out)]) == 0
    assert "4 files in" in capsys.readouterr().out
    assert main(["data", "mix", str(a), "--out", str(a / "images" / "m")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["data", "mix", f"{a}:two", "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "whole number" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (a / "images").iterdir()) == ["x.jpg", "y.jpg"]
