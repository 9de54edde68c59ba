"""glassgem predict on video files (glassgem.inference.video): per-frame masks equal the photo predictions of the
decoded frames, frames.csv, the overlay video, --every/--max-frames, --resume, bad files."""

from __future__ import annotations

import csv
import sys
from fractions import Fraction
from pathlib import Path

import av  # the video extra, part of the dev extra that `make test` installs
import numpy as np
import pytest
import torch
from PIL import Image

from glassgem.cli import main
from glassgem.errors import GlassgemError
from glassgem.inference.files import Photo, collect_inputs
from glassgem.inference.predict import predict_files
from glassgem.overlay import overlay_mask

FPS = 10


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """A bright square moving across colour ramps: the red-channel scorer's mask changes frame by frame."""
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        img = np.stack([60 + 0 * x, 255 * y / h, 255 * x / w], axis=-1)
        img[h // 4 : h // 4 + h // 3, 4 * i : 4 * i + w // 3, 0] = 230
        frames.append(img.astype(np.uint8))
    return frames


def _write_clip(path: Path, frames: list[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


class RedScorer:
    """Glass where the squashed frame's red channel > 127.5; counts the frames it scores."""

    input_size = 64

    def __init__(self) -> None:
        self.scored = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.scored += len(images)
        return torch.stack([torch.full_like(images[:, 0], 127.5), images[:, 0]], dim=1)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _write_clip(tmp_path_factory.mktemp("video") / "clip.mp4", _frames(12, 48, 80))


def test_frame_masks_equal_the_photo_predictions_of_the_decoded_frames(clip, tmp_path):
    out = tmp_path / "out"
    summary = predict_files(
        [Photo(clip, "clip")], out, RedScorer(), batch_size=3, overlay=True, save_prob=True, every=3, progress=False
    )
    assert not summary.failed and len(summary.videos) == 1 and summary.videos[0].frames == 4
    decoded = _decode(clip)
    assert len(decoded) == 12
    # the same frames as photos, through the photo path
    for i in (0, 3, 6, 9):
        Image.fromarray(decoded[i]).save(tmp_path / f"f{i}.png")
    ref = tmp_path / "ref"
    predict_files([Photo(tmp_path / f"f{i}.png", f"f{i}") for i in (0, 3, 6, 9)], ref, RedScorer(), progress=False)
    rows = _csv(out / "clip" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == [0, 3, 6, 9]
    masks = []
    for r in rows:
        i = int(r["frame"])
        mask = _read(out / "clip" / f"{i:06d}.png")
        assert mask.shape == (48, 80)
        assert np.array_equal(mask, _read(ref / f"f{i}.png"))
        assert _read(out / "clip" / f"{i:06d}_prob.png").shape == (48, 80)
        assert float(r["time_s"]) == pytest.approx(i / FPS, abs=1e-3)
        assert float(r["glass_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
        masks.append(mask > 0)
    assert 0.05 < np.mean(masks) < 0.5  # the moving square, not an all-or-nothing map
    assert not np.array_equal(masks[0], masks[-1])
    # the overlay video: the processed frames at a third of the rate, the glass tinted
    with av.open(str(out / "clip_overlay.mp4")) as c:
        s = c.streams.video[0]
        assert s.average_rate == Fraction(FPS, 3)
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(shown) == 4 and shown[0].shape == (48, 80, 3)
    for frame, mask, i in zip(shown, masks, (0, 3, 6, 9)):
        expected = overlay_mask(decoded[i], mask).astype(float)
        err = np.abs(frame.astype(float) - expected)[mask].mean()
        plain = np.abs(frame.astype(float) - decoded[i])[mask].mean()
        assert (
            err < 12 and plain > 2.5 * err
        )  # on the glass (H.264 4:2:0 blurs the red outline): close to the tinted frame, not to the plain one
    assert not list(out.glob(".*part"))  # the temporary file was moved into place


def test_max_frames_then_resume_scores_only_the_rest_and_matches_a_fresh_run(clip, tmp_path):
    first = RedScorer()
    s1 = predict_files([Photo(clip, "clip")], tmp_path / "out", first, max_frames=5, progress=False)
    assert s1.videos[0].frames == 5 and first.scored == 5
    assert len(_csv(tmp_path / "out" / "clip" / "frames.csv")) == 5
    (tmp_path / "out" / "clip" / "000003.png").unlink()  # as if the run had stopped while writing it
    again = RedScorer()
    s2 = predict_files([Photo(clip, "clip")], tmp_path / "out", again, overlay=True, resume=True, progress=False)
    v = s2.videos[0]
    assert (v.frames, v.resumed, again.scored) == (12, 4, 8)
    assert "4 already there" in s2.line()
    fresh = tmp_path / "fresh"
    predict_files([Photo(clip, "clip")], fresh, RedScorer(), overlay=True, progress=False)
    assert _csv(tmp_path / "out" / "clip" / "frames.csv") == _csv(fresh / "clip" / "frames.csv")
    for i in range(12):
        assert np.array_equal(_read(tmp_path / "out" / "clip" / f"{i:06d}.png"), _read(fresh / "clip" / f"{i:06d}.png"))
    assert len(_decode(tmp_path / "out" / "clip_overlay.mp4")) == 12


def test_odd_sized_lossless_mkv_keeps_full_size_masks_and_an_even_overlay(tmp_path):
    frames = _frames(3, 45, 63)
    clip = _write_clip(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert np.array_equal(_decode(clip)[2], frames[2])  # lossless: the frames are the ones written
    out = tmp_path / "out"
    s = predict_files([Photo(clip, "odd")], out, RedScorer(), overlay=True, progress=False)
    assert not s.failed
    Image.fromarray(frames[2]).save(tmp_path / "f2.png")
    predict_files([Photo(tmp_path / "f2.png", "f2")], tmp_path / "ref", RedScorer(), progress=False)
    mask = _read(out / "odd" / "000002.png")
    assert mask.shape == (45, 63) and mask.any()
    assert np.array_equal(mask, _read(tmp_path / "ref" / "f2.png"))
    assert _decode(out / "odd_overlay.mp4")[0].shape == (44, 62, 3)  # 4:2:0 needs even sizes


@pytest.mark.slow
def test_cli_video_and_photo_together_with_a_corrupt_video(clip, tmp_path, capsys):
    from test_predict import _balanced_debug_model  # the debug model, glass logit balanced on a frame

    frames = _decode(clip)
    weights = _balanced_debug_model(frames[6]).save_pretrained(tmp_path / "debug")
    Image.fromarray(frames[0]).save(tmp_path / "photo.jpg")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(clip),
            str(tmp_path / "broken.mp4"),
            str(tmp_path / "photo.jpg"),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--every",
            "4",
            "--overlay",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.mp4: cannot read video" in captured.err
    assert "3 frame mask(s)" in captured.out and "frames/s" in captured.out
    assert "wrote 1 mask(s)" in captured.out and "1 failed" in captured.out
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["000000.png", "000004.png", "000008.png", "frames.csv"]
    assert (out / "photo.png").is_file() and (out / "clip_overlay.mp4").is_file()
    assert not (out / "broken").exists()


def test_folders_take_videos_and_clashing_names_are_renamed(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    (folder / "a.MOV").write_bytes(clip.read_bytes())
    Image.fromarray(_frames(1, 20, 20)[0]).save(folder / "b.png")
    photos = collect_inputs([str(folder)])
    assert [(p.path.name, p.video) for p in photos] == [("a.MOV", True), ("a.mp4", True), ("b.png", False)]
    s = predict_files(photos, tmp_path / "out", RedScorer(), every=6, progress=False)
    assert not s.failed and s.written == 1 and [v.frames for v in s.videos] == [2, 2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "a_2", "b.png"]


def test_bad_frame_options_and_missing_pyav_are_reported_before_any_model_loads(clip, tmp_path, capsys, monkeypatch):
    for flag, value in (("--every", "0"), ("--max-frames", "0")):
        rc = main(
            ["predict", str(clip), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "none"), flag, value]
        )
        assert rc != 0 and f"{flag} must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    rc = main(["predict", str(clip), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc != 0 and 'pip install -e ".[video]"' in err and "none" not in err  # not the weights error
    with pytest.raises(GlassgemError, match="PyAV"):
        predict_files([Photo(clip, "clip")], tmp_path / "o2", RedScorer(), progress=False)
