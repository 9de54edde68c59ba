"""Real-scene sets: polygon labels -> masks, the manifest, and the rebuild from a tiny local git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glassgem.cli import main
from glassgem.data import real_scenes as rs
from glassgem.data.polygons import label_mask, load_label, parse_label, rasterize
from glassgem.errors import DataError
from glassgem.io import load_mask


def test_rasterize_square_minus_cut():
    label = parse_label(
        {
            "size": [20, 10],
            "glass": [[[2, 2], [11, 2], [11, 7], [2, 7]]],
            "not_glass": [[[5, 0], [7, 0], [7, 9], [5, 9]]],
        }
    )
    m = rasterize(label)
    assert m.shape == (10, 20) and set(np.unique(m)) == {0, 255}
    want = np.zeros((10, 20), bool)
    want[2:8, 2:12] = True
    want[:, 5:8] = False  # the cut, outline included
    assert np.array_equal(m > 0, want)


def test_no_glass_is_all_zero():
    assert not rasterize(parse_label({"size": [8, 6], "glass": []})).any()


@pytest.mark.parametrize(
    "label, words",
    [
        ({"glass": []}, "'size'"),
        ({"size": [0, 5], "glass": []}, "'size'"),
        ({"size": [10, 10], "glass": [[[0, 0], [1, 1]]]}, "at least 3"),
        ({"size": [10, 10], "glass": [[[0, 0], [1, "a"], [2, 2]]]}, "not [x, y]"),
        ({"size": [10, 10], "glass": [[[0, 0], [50, 0], [2, 2]]]}, "outside the 10x10"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_labels_are_refused(label, words):
    with pytest.raises(DataError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_label(label, "x.json")


def test_label_for_another_size_names_the_file(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"size": [10, 8], "glass": []}))
    with pytest.raises(DataError, match="a.json: label drawn for 10x8, but the photo is 12x8"):
        label_mask(f, (12, 8))
    f.write_text("{not json")
    with pytest.raises(DataError, match="a.json: cannot read label"):
        label_mask(f)


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _tiny_source(tmp_path: Path) -> tuple[Path, str, Path, Path]:
    """A git repository owner+name with two photos, a manifest pinning its commit, and labels."""
    repo = tmp_path / "repos" / "someone+photos"
    (repo / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(repo / "imgs" / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(repo / "imgs" / "b.png")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "photos", cwd=repo)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    labels = tmp_path / "labels" / "src1"
    labels.mkdir(parents=True)
    (labels / "a.json").write_text(json.dumps({"size": [40, 30], "glass": [[[0, 0], [19, 0], [19, 29], [0, 29]]]}))
    (labels / "b.json").write_text(json.dumps({"size": [24, 24], "glass": []}))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "source,stem,split,repo,commit,path,licence\n"
        f"src1,a,dev,someone/photos,{commit},imgs/a.jpg,MIT\n"
        f"src1,b,dev,someone/photos,{commit},imgs/b.png,MIT\n"
    )
    return repo, commit, manifest, tmp_path / "labels"


def test_rebuild_from_local_folder_and_resume(tmp_path, capsys):
    repo, _, manifest, labels = _tiny_source(tmp_path)
    out = tmp_path / "out"
    code = main(
        [
            "data",
            "real-scenes",
            "--from",
            str(repo.parent),
            "--out",
            str(out),
            "--split",
            "dev",
            "--manifest",
            str(manifest),
            "--labels",
            str(labels),
            "--sheet",
        ]
    )
    assert code == 0
    assert "dev: 2 photos" in capsys.readouterr().out
    img = out / "dev" / "images" / "src1__a.jpg"
    assert img.read_bytes() == (repo / "imgs" / "a.jpg").read_bytes()  # the photo's bytes, untouched
    m = load_mask(out / "dev" / "masks" / "src1__a.png")
    assert m.shape == (30, 40) and m[:, :20].all() and not m[:, 20:].any()
    assert not load_mask(out / "dev" / "masks" / "src1__b.png").any()
    assert (out / "dev" / "sheet.jpg").is_file()
    # resume: a second run keeps what is there (even after the repository is gone)
    before = img.stat().st_mtime_ns
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    assert rs.rebuild(str(tmp_path / "repos"), out, ("dev",), manifest=manifest, labels=labels, progress=False) == {
        "dev": 2
    }
    assert img.stat().st_mtime_ns == before


def test_rebuild_from_url_prefix(tmp_path):
    repo, _, manifest, labels = _tiny_source(tmp_path)
    out = tmp_path / "out"
    # PREFIX/owner/name: lay the repository out as a server would
    served = tmp_path / "served" / "someone"
    served.mkdir(parents=True)
    repo.rename(served / "photos")
    counts = rs.rebuild(
        f"file://{tmp_path / 'served'}", out, ("dev",), manifest=manifest, labels=labels, progress=False
    )
    assert counts == {"dev": 2}
    assert (out / "dev" / "masks" / "src1__a.png").is_file()


def test_rebuild_errors_name_what_is_wrong(tmp_path):
    repo, commit, manifest, labels = _tiny_source(tmp_path)
    with pytest.raises(DataError, match="no git repository for someone/photos"):
        rs.rebuild(
            str(tmp_path / "labels"), tmp_path / "o1", ("dev",), manifest=manifest, labels=labels, progress=False
        )
    bad = tmp_path / "bad.csv"
    bad.write_text(manifest.read_text().replace("src1,b,dev", "../x,b,dev"))
    with pytest.raises(DataError, match="plain names"):
        rs.read_manifest(bad)
    bad.write_text(manifest.read_text().replace("src1,b,dev", "src1,b,train"))
    with pytest.raises(DataError, match="in both splits"):
        rs.read_manifest(bad)
    (labels / "src1" / "a.json").write_text(json.dumps({"size": [41, 30], "glass": []}))
    with pytest.raises(DataError, match="a.json: label drawn for 41x30, but the photo is 40x30"):
        rs.rebuild(str(repo.parent), tmp_path / "o2", ("dev",), manifest=manifest, labels=labels, progress=False)


def test_later_training_splits_may_share_sources_with_train_but_not_with_dev(tmp_path):
    """`train2`, `train3` and `train4` are further training splits: photos of train's sources (or new ones)
    rebuilt into OUT/train2, OUT/train3 and OUT/train4, so a model trained on the earlier splits alone stays
    reproducible; a dev source in any training split is refused."""
    repo, _, manifest, labels = _tiny_source(tmp_path)
    shared = tmp_path / "shared.csv"
    shared.write_text(manifest.read_text().replace("src1,a,dev", "src1,a,train").replace("src1,b,dev", "src1,b,train2"))
    entries = rs.read_manifest(shared)
    assert [e.split for e in entries] == ["train", "train2"]
    counts = rs.rebuild(str(repo.parent), tmp_path / "out", rs.SPLITS, manifest=shared, labels=labels, progress=False)
    assert counts == {"train": 1, "train2": 1, "train3": 0, "train4": 0, "dev": 0}
    assert (tmp_path / "out" / "train2" / "masks" / "src1__b.png").is_file()
    assert not (tmp_path / "out" / "train2" / "masks" / "src1__a.png").exists()
    for later in ("train3", "train4"):
        third = tmp_path / f"{later}.csv"
        third.write_text(
            manifest.read_text().replace("src1,a,dev", "src1,a,train").replace("src1,b,dev", f"src1,b,{later}")
        )
        out = tmp_path / f"o_{later}"
        counts = rs.rebuild(str(repo.parent), out, (later,), manifest=third, labels=labels, progress=False)
        assert counts == {later: 1}
        assert sorted(p.name for p in (out / later / "masks").iterdir()) == ["src1__b.png"]
    for split in ("train2", "train3", "train4"):
        leak = tmp_path / f"leak_{split}.csv"
        leak.write_text(manifest.read_text().replace("src1,b,dev", f"src1,b,{split}"))
        with pytest.raises(DataError, match="src1 is in both splits, dev and training"):
            rs.read_manifest(leak)


def test_a_dev_photo_published_again_by_a_training_source_is_refused(tmp_path):
    """Split by source is not enough: the same picture in two repositories (re-encoded) must not be in dev and
    in a training split; the rebuild names both files. Different pictures pass."""
    repo, _, manifest, labels = _tiny_source(tmp_path)
    Image.open(repo / "imgs" / "a.jpg").save(repo / "imgs" / "copy_of_a.jpg", quality=70)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "copy", cwd=repo)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    (labels / "src2").mkdir()
    (labels / "src2" / "copy_of_a.json").write_text(json.dumps({"size": [40, 30], "glass": []}))
    head = "source,stem,split,repo,commit,path,licence\n"
    a_dev = f"src1,a,dev,someone/photos,{commit},imgs/a.jpg,MIT\n"
    b_dev = f"src1,b,dev,someone/photos,{commit},imgs/b.png,MIT\n"
    for split in ("train", "train4"):
        copied = tmp_path / f"copied_{split}.csv"
        copied.write_text(head + a_dev + f"src2,copy_of_a,{split},someone/photos,{commit},imgs/copy_of_a.jpg,MIT\n")
        with pytest.raises(
            DataError, match=rf"dev/images/src1__a.jpg is the same picture as .*{split}/images/src2__copy_of_a"
        ):
            rs.rebuild(
                str(repo.parent), tmp_path / f"o_{split}", rs.SPLITS, manifest=copied, labels=labels, progress=False
            )
    apart = tmp_path / "apart.csv"
    apart.write_text(head + b_dev + f"src2,copy_of_a,train,someone/photos,{commit},imgs/copy_of_a.jpg,MIT\n")
    counts = rs.rebuild(
        str(repo.parent), tmp_path / "o_apart", rs.SPLITS, manifest=apart, labels=labels, progress=False
    )
    assert counts == {"train": 1, "train2": 0, "train3": 0, "train4": 0, "dev": 1}


def test_rebuild_removes_photos_the_manifest_no_longer_lists(tmp_path):
    """A photo dropped from the manifest leaves the rebuilt split (image and mask), so an evaluation of OUT/dev
    scores the current set; files that glassgem did not name (no `source__stem`) are left alone."""
    repo, _, manifest, labels = _tiny_source(tmp_path)
    out = tmp_path / "out"
    assert rs.rebuild(str(repo.parent), out, ("dev",), manifest=manifest, labels=labels, progress=False) == {"dev": 2}
    (out / "dev" / "images" / "notes.txt").write_text("mine")
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("".join(line for line in manifest.read_text().splitlines(True) if ",b,dev," not in line))
    assert rs.rebuild(str(repo.parent), out, ("dev",), manifest=fewer, labels=labels, progress=False) == {"dev": 1}
    assert sorted(p.name for p in (out / "dev" / "images").iterdir()) == ["notes.txt", "src1__a.jpg"]
    assert sorted(p.name for p in (out / "dev" / "masks").iterdir()) == ["src1__a.png"]


def test_cli_split_choices_are_the_manifest_splits(capsys):
    """`glassgem data real-scenes --split` lists its choices without importing the data module (start-up): they
    must be the splits read_manifest accepts."""
    assert main(["data", "real-scenes", "--from", "x", "--out", "y", "--split", "bogus"]) == 2
    listed = ", ".join(repr(s) for s in ("all", *rs.SPLITS))
    assert f"(choose from {listed})" in capsys.readouterr().err


def test_shipped_manifest_and_labels_agree():
    entries = rs.read_manifest()
    assert entries, "the shipped manifest is empty"
    by_split = {s: [e for e in entries if e.split == s] for s in rs.SPLITS}
    assert len(by_split["train"]) >= 200 and len(by_split["dev"]) >= 40
    training = {e.source for s in rs.TRAINING_SPLITS for e in by_split[s]}
    assert not training & {e.source for e in by_split["dev"]}
    for e in entries:
        label = rs.label_path(e)
        assert label.is_file(), f"no label for {e.source}/{e.stem}"
        load_label(label)  # valid
    listed = {(e.source, e.stem) for e in entries}
    on_disk = {(p.parent.name, p.stem) for p in rs.LABELS.glob("*/*.json")}
    assert on_disk == listed, "labels and manifest rows must match one to one"


def test_outputs_never_land_in_an_input(tmp_path, capsys):
    repo, _, manifest, labels = _tiny_source(tmp_path)
    before = sorted(p.read_bytes() for p in repo.rglob("*") if p.is_file())
    code = main(
        [
            "data",
            "real-scenes",
            "--from",
            str(repo.parent),
            "--out",
            str(repo.parent / "x"),
            "--manifest",
            str(manifest),
            "--labels",
            str(labels),
        ]
    )
    assert code == 2 and "--out" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in repo.rglob("*") if p.is_file()) == before
    assert not (repo.parent / "x").exists()
