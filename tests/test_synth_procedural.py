"""glassgem.synth.procedural.pipeline: exact masks, determinism, resumability, backgrounds, CLI, data check.

Masks are checked against an independent rasteriser (skimage.draw.polygon2mask) replaying the geometry
the manifest records; small sizes keep every test fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import polygon2mask

from glassgem.cli import main
from glassgem.data.checks import check_dataset
from glassgem.errors import ConfigError, DataError
from glassgem.io import load_image, load_mask, read_mask_values
from glassgem.synth.procedural.backgrounds import Backgrounds, default_backgrounds, folder_backgrounds
from glassgem.synth.procedural.glass_effects import GlassLook, render_pane
from glassgem.synth.procedural.glass_geometry import (
    blob_polygon,
    fit_homography,
    grid_layout,
    perspective_plane,
    rasterize_polygon,
    rect_to_quad,
)
from glassgem.synth.procedural.glass_scene import MODES
from glassgem.synth.procedural.pipeline import contact_sheet, synthesize
from glassgem.synth.procedural.render import generate_scene

SMALL = (160, 120)


@pytest.fixture(scope="module")
def bgs() -> Backgrounds:
    return default_backgrounds()


def replay_layers(meta: dict, shape: tuple[int, int]) -> np.ndarray:
    """The mask as the recorded geometry says, painted in depth order with skimage's rasteriser."""
    mask = np.zeros(shape, dtype=bool)
    for layer in meta["layers"]:
        xy = np.asarray(layer["polygon"], dtype=float)
        mask[polygon2mask(shape, xy[:, ::-1])] = layer["glass"]
    return mask


# ------------------------------------------------------------------------------------- geometry
def test_rasterize_polygon_agrees_with_skimage_on_nonconvex_shapes():
    rng = np.random.default_rng(7)
    for _ in range(40):
        poly = blob_polygon(rng, tuple(rng.uniform(0, 90, 2)), tuple(rng.uniform(4, 50, 2)), wobble=0.5)
        ours = rasterize_polygon(poly, (70, 90))
        assert np.array_equal(ours, polygon2mask((70, 90), poly[:, ::-1]))


def test_window_layout_tiles_the_window_exactly_under_perspective():
    rng = np.random.default_rng(3)
    for _ in range(25):
        h = perspective_plane(rng, tuple(rng.uniform(-15, 15, 4) + [10.3, 5.7, 110.1, 80.9]), rng.uniform(0, 1))
        layout = grid_layout(
            rng,
            int(rng.integers(1, 4)),
            int(rng.integers(1, 4)),
            tuple(rng.uniform(0, 0.1, 4)),
            tuple(rng.uniform(0.01, 0.05, 2)),
            even=False,
        )
        count = np.zeros((90, 120), dtype=int)
        for rect in layout.bars + layout.panes:
            count += polygon2mask((90, 120), rect_to_quad(h, rect)[:, ::-1])
        outer = polygon2mask((90, 120), rect_to_quad(h, (0, 0, 1, 1))[:, ::-1])
        assert count.max() <= 1, "bars and panes overlap"
        assert np.array_equal(count == 1, outer), "bars and panes leave a gap in the window"


def test_fit_homography_maps_the_four_corners():
    src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    dst = np.array([[10, 12], [90, 20], [85, 70], [8, 60]], float)
    assert np.allclose(rect_to_quad(fit_homography(src, dst), (0, 0, 1, 1)), dst)


# ----------------------------------------------------------------------------------------- masks
def test_masks_equal_the_recorded_geometry_in_every_kind_of_scene(bgs):
    seen_modes, seen = set(), {"occluder": 0, "handle": 0, "frame": 0}
    for i in range(400):
        image, mask, meta = generate_scene(np.random.default_rng([11, i]), bgs, SMALL)
        assert image.shape == (SMALL[1], SMALL[0], 3) and image.dtype == np.uint8
        assert mask.shape == (SMALL[1], SMALL[0]) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        assert np.array_equal(mask.astype(bool), replay_layers(meta, mask.shape)), f"scene {i} ({meta['mode']})"
        assert meta["no_glass"] == (not mask.any())
        assert meta["glass_fraction"] == pytest.approx(mask.mean(), abs=1e-5)
        if meta["mode"] == "none":
            assert not mask.any() and meta["n_panes"] == 0
        for layer in meta["layers"]:
            if layer["kind"] in seen and polygon2mask(mask.shape, np.asarray(layer["polygon"])[:, ::-1]).any():
                seen[layer["kind"]] += 1
        seen_modes.add(meta["mode"])
        if seen_modes == set(MODES) and min(seen.values()) > 0 and i >= 30:
            break
    assert seen_modes == set(MODES), f"modes never drawn: {set(MODES) - seen_modes}"
    assert min(seen.values()) > 0, seen


def test_opaque_parts_are_never_glass(bgs):
    """Frames, handles and occluders drawn last in a scene leave no glass under them."""
    for i in range(40):
        _, mask, meta = generate_scene(np.random.default_rng([5, i]), bgs, SMALL)
        for k, layer in enumerate(meta["layers"]):
            later_glass = any(L["glass"] for L in meta["layers"][k + 1 :])
            if not layer["glass"] and not later_glass:
                covered = polygon2mask(mask.shape, np.asarray(layer["polygon"])[:, ::-1])
                assert not mask[covered].any(), f"scene {i}: glass under a {layer['kind']}"


# --------------------------------------------------------------------------------------- effects
def _flat_pane(look: GlassLook, behind_value: float, reflection_value: float):
    h, w = 60, 80
    canvas = np.zeros((h, w, 3), np.float32)
    quad = np.array([[10.5, 8.5], [70.5, 8.5], [70.5, 52.5], [10.5, 52.5]])
    unit_h = fit_homography(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float), quad)
    behind = np.full((h, w, 3), behind_value, np.float32)
    reflection = np.full((h, w, 3), reflection_value, np.float32)
    render_pane(canvas, behind, reflection, quad, np.linalg.inv(unit_h), (0, 0, 1, 1), look, np.random.default_rng(0))
    return canvas


def _look(**kw) -> GlassLook:
    base = dict(
        tint=(0.9, 0.99, 0.95),
        attenuation=0.05,
        contrast_loss=0.1,
        refraction_px=0.0,
        edge_refraction_px=0.0,
        defocus_sigma=0.0,
        reflectance=0.0,
        fresnel=0.0,
        reflection_gradient=0.0,
        rim_darkening=0.0,
    )
    base.update(kw)
    return GlassLook(**base)


def test_transmission_is_tinted_and_darker():
    out = _flat_pane(_look(), 0.5, 0.0)
    centre = out[30, 40]
    assert np.allclose(centre, 0.5 * np.array([0.9, 0.99, 0.95]) * 0.95, atol=1e-4)
    assert centre[1] > centre[2] > centre[0]  # the green cast of float glass


def test_reflection_is_stronger_towards_the_edges():
    out = _flat_pane(_look(reflectance=0.1, fresnel=1.0), 0.2, 1.0)
    centre, near_edge = out[30, 40].mean(), out[30, 12].mean()
    assert near_edge > centre + 0.02


def test_refraction_displaces_what_is_behind():
    h, w = 60, 80
    ramp = np.repeat(np.linspace(0, 1, w, dtype=np.float32)[None, :, None], 3, axis=2).repeat(h, axis=0)
    quad = np.array([[10.5, 8.5], [70.5, 8.5], [70.5, 52.5], [10.5, 52.5]])
    hinv = np.linalg.inv(fit_homography(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float), quad))
    outs = []
    for px in (0.0, 3.0):
        canvas = np.zeros((h, w, 3), np.float32)
        look = _look(tint=(1.0, 1.0, 1.0), attenuation=0.0, contrast_loss=0.0, refraction_px=px)
        render_pane(canvas, ramp, np.zeros_like(ramp), quad, hinv, (0, 0, 1, 1), look, np.random.default_rng(1))
        outs.append(canvas[20:40, 25:55, 0])
    assert np.allclose(outs[0], ramp[20:40, 25:55, 0], atol=1e-5)  # no refraction: the ramp as it is
    assert np.abs(outs[1] - outs[0]).max() > 0.01  # refraction moves it


# ------------------------------------------------------------------------------ whole data sets
def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("procedural") / "set"
    synthesize(out, n=8, seed=3, size=(128, 96), progress=False)
    return out


def test_synthesize_writes_the_sgsd_layout_with_a_consistent_manifest(small_set):
    records = [json.loads(line) for line in (small_set / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"proc_{i:06d}" for i in range(8)]
    for r in records:
        assert r["seed"] == 3 and r["background"] and isinstance(r["n_panes"], int)
        image, mask = load_image(small_set / r["image"]), load_mask(small_set / r["mask"])
        assert image.shape[:2] == mask.shape == (96, 128)
        assert set(np.unique(read_mask_values(small_set / r["mask"]))) <= {0, 255}
        assert r["glass_fraction"] == pytest.approx(mask.mean(), abs=1e-5)
        assert np.array_equal(mask.astype(bool), replay_layers(r, mask.shape))


def test_glassgem_data_check_passes_on_the_output(small_set):
    report = check_dataset(small_set, layout="sgsd", progress=False)
    assert report.ok, report.to_text()
    # No-glass scenes are by design; nothing else may be even a warning.
    assert [w for w in report.warnings if "no glass" not in w] == [], report.to_text()


def test_same_seed_same_bytes_whatever_the_worker_count(small_set, tmp_path):
    synthesize(tmp_path / "two", n=8, seed=3, size=(128, 96), workers=2, progress=False)
    assert _files(tmp_path / "two") == _files(small_set)


def test_a_different_seed_gives_different_scenes(small_set, tmp_path):
    synthesize(tmp_path / "other", n=2, seed=4, size=(128, 96), progress=False)
    assert (tmp_path / "other/images/proc_000000.jpg").read_bytes() != (
        small_set / "images/proc_000000.jpg"
    ).read_bytes()


def test_restart_regenerates_exactly_the_missing_files(small_set, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(small_set, out)
    before = _files(out)
    removed = ["images/proc_000001.jpg", "masks/proc_000004.png", "meta/proc_000006.json", "manifest.jsonl"]
    for rel in removed:
        (out / rel).unlink()
    untouched = out / "images/proc_000002.jpg"
    stamp = untouched.stat().st_mtime_ns
    summary = synthesize(out, n=8, seed=3, size=(128, 96), progress=False)
    assert summary["generated"] == 3 and summary["skipped"] == 5
    assert _files(out) == before
    assert untouched.stat().st_mtime_ns == stamp  # finished scenes are not rewritten


def test_resuming_with_other_settings_is_refused(small_set, tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        synthesize(small_set, n=8, seed=99, size=(128, 96), progress=False)
    with pytest.raises(ConfigError, match="size"):
        synthesize(small_set, n=8, seed=3, size=(96, 96), progress=False)
    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(foreign / "images" / "x.jpg")
    with pytest.raises(DataError, match="synth_config.json"):
        synthesize(foreign, n=1, progress=False)


def test_contact_sheet_shows_image_and_overlay_pairs(small_set, tmp_path):
    path = contact_sheet(small_set, tmp_path / "sheet.png", n=4, tile=(64, 48), pairs_per_row=2)
    sheet = load_image(path)
    # two rows of two (image | overlay) pairs: 2 * 48 px plus one gap row
    assert sheet.shape[0] == 2 * 48 + 12 and sheet.shape[1] == 2 * (2 * 64 + 4) + 12
    first_image = sheet[:48, :64].astype(int)
    first_overlay = sheet[:48, 68:132].astype(int)
    glass = (
        np.asarray(
            Image.fromarray(load_mask(small_set / "masks/proc_000000.png") * 255).resize(
                (64, 48), Image.Resampling.NEAREST
            )
        )
        > 0
    )
    assert glass.any()
    assert np.abs(first_overlay - first_image)[glass].mean() > 20  # glass is highlighted
    assert np.abs(first_overlay - first_image)[~glass].mean() < 3  # the rest is the photo


# ---------------------------------------------------------------------------------- backgrounds
def test_default_backgrounds_load_offline_as_rgb(bgs):
    assert len(bgs) >= 12
    for i in range(len(bgs)):
        img = bgs.image(i)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 100


def test_user_backgrounds_folder(tmp_path):
    folder = tmp_path / "bg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(folder / f"photo{k}.png")
    out = tmp_path / "out"
    synthesize(out, n=3, seed=1, backgrounds=folder, size=(96, 64), image_format="png", progress=False)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(os.listdir(out / "images")) == [f"proc_00000{i}.png" for i in range(3)]
    assert load_image(out / records[0]["image"]).shape == (64, 96, 3)
    for r in records:  # every photo it used came from the folder
        text = json.dumps(r)
        assert "skimage:" not in text and ("photo0.png" in text or "photo1.png" in text)


def test_bad_backgrounds_folders_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        folder_backgrounds(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        folder_backgrounds(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        folder_backgrounds(tmp_path / "bad")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_synth_procedural(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "synth",
                "procedural",
                "--out",
                str(out),
                "--n",
                "2",
                "--size",
                "64x96",
                "--seed",
                "2",
                "--contact-sheet",
                str(tmp_path / "sheet.jpg"),
            ]
        )
        == 0
    )
    assert sorted(os.listdir(out / "images")) == ["proc_000000.jpg", "proc_000001.jpg"]
    assert load_image(out / "images/proc_000000.jpg").shape == (64, 96, 3)
    assert (tmp_path / "sheet.jpg").is_file()
    assert (
        main(
            [
                "synth",
                "procedural",
                "--out",
                str(tmp_path / "x"),
                "--n",
                "1",
                "--backgrounds",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert "nowhere" in capsys.readouterr().err


# --------------------------------------------------------------------------- glass-free photo scenes
def _photo_folder(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(folder / f"photo{k}.png")
    return folder


def test_glass_free_fraction_is_spread_evenly_and_nested():
    from glassgem.synth.procedural.glass_free import is_glass_free

    assert [i for i in range(10) if is_glass_free(i, 0.2)] == [4, 9]
    assert not any(is_glass_free(i, 0.0) for i in range(50))
    assert all(is_glass_free(i, 1.0) for i in range(50))
    for p in (0.07, 0.2, 0.25, 0.57):  # every prefix holds floor(n p) of them: 1x is inside 20x
        for n in (1, 13, 100, 572):
            assert sum(is_glass_free(i, p) for i in range(n)) == int(np.floor(n * p + 1e-9))


def test_glass_free_scenes_are_photos_with_empty_masks(tmp_path):
    folder = _photo_folder(tmp_path / "bg")
    out = tmp_path / "out"
    summary = synthesize(
        out, n=10, seed=1, backgrounds=folder, size=(96, 64), image_format="png", glass_free=0.2, progress=False
    )
    assert summary["glass_free_photos"] == 2
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    free = [r["index"] for r in records if r["mode"] == "glass_free_photo"]
    assert free == [4, 9]
    for r in records:
        mask = load_mask(out / r["mask"])
        if r["index"] in free:
            assert r["no_glass"] and r["glass_fraction"] == 0.0 and not mask.any()
            assert r["background"]["source"] in ("photo0.png", "photo1.png") and r["layers"] == []
            assert load_image(out / r["image"]).std() > 10  # a (noisy) photo, not a blank
    assert json.loads((out / "synth_config.json").read_text())["glass_free"] == 0.2
    # the other scenes are the glass scenes of a glass_free=0 set with the same seed, byte for byte
    plain = tmp_path / "plain"
    synthesize(plain, n=4, seed=1, backgrounds=folder, size=(96, 64), image_format="png", progress=False)
    assert "glass_free" not in json.loads((plain / "synth_config.json").read_text())  # old folders resume
    for i in range(4):
        assert (plain / f"images/proc_00000{i}.png").read_bytes() == (out / f"images/proc_00000{i}.png").read_bytes()
    with pytest.raises(ConfigError, match="glass_free"):  # resuming with another fraction is refused
        synthesize(
            out, n=10, seed=1, backgrounds=folder, size=(96, 64), image_format="png", glass_free=0.3, progress=False
        )
    with pytest.raises(ConfigError, match="fraction"):
        synthesize(tmp_path / "bad", n=1, glass_free=1.5, progress=False)


def test_a_dataset_folder_gives_its_images_not_its_masks(tmp_path):
    root = tmp_path / "photos" / "train"
    _photo_folder(root / "images")
    (root / "masks").mkdir()
    for k in range(2):
        Image.fromarray(np.zeros((90, 140), np.uint8)).save(root / "masks" / f"photo{k}.png")
    bgs = folder_backgrounds(root)
    assert bgs.names == ["photo0.png", "photo1.png"] and bgs.image(0).std() > 10


def test_cli_glass_free(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "synth",
                "procedural",
                "--out",
                str(out),
                "--n",
                "5",
                "--size",
                "64x48",
                "--glass-free",
                "0.2",
                "--backgrounds",
                str(_photo_folder(tmp_path / "bg")),
            ]
        )
        == 0
    )
    assert "1 of them glass-free photos" in capsys.readouterr().out
    assert not load_mask(out / "masks/proc_000004.png").any()
