"""The world and the helpers of tests/test_bad_inputs.py: files every row reads (and must leave as they were)
and what some rows do before or around their command (an earlier run, a held lock, a symlink in --out, a full
disk). Import from here (`from bad_input_fixtures import ...`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from glassgem.cli import main


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _dataset(root: Path, mask_values=(0, 255), n: int = 3) -> Path:
    for i in range(n):
        _png(root / "images" / f"s{i}.png", np.full((40, 48, 3), 60 + 20 * i, np.uint8))
        mask = np.full((40, 48), mask_values[0], np.uint8)
        for j, v in enumerate(mask_values[1:]):
            mask[4 + 8 * j : 10 + 8 * j, 4:40] = v
        _png(root / "masks" / f"s{i}.png", mask)
    return root


BAD_CONFIGS = {
    "hidden_str": {"hidden_dim": "128"},
    "queries_neg": {"num_queries": -5},
    "hidden_float": {"hidden_dim": 1e12},
    "hidden_huge": {"hidden_dim": 10**12},
    "std_zero": {"pixel_std": [0, 0, 0]},
    "layers_0": {"dec_layers": 0},
    "nheads_3": {"nheads": 3},
    "dqs_str": {"use_dqs": "no"},
    "dn_bogus": {"dn": "bogus"},
    "name_null": {"name": None},
}
PLAN = 'name = "p"\n[data]\nreal = ""\neval = ""\n[[runs]]\nname = {name}\nfinetune = "real"\nscale = {scale}\n'


def _clip(path: Path, n: int, options: dict[str, str]) -> Path:
    """A video of `n` noise frames at 10 frames/s (the video extra, part of the dev extra)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=10)
        s.height, s.width, s.pix_fmt = 48, 64, "yuv420p"
        for _ in range(n):
            for packet in s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def _safety_world(w: dict[str, Path]) -> None:
    """Inputs of the rows that guard against lost files, writes outside --out and unchecked files."""
    t = w["t"]
    cfg = json.loads((w["model"] / "config.json").read_text())
    for key, change in BAD_CONFIGS.items():
        folder = t / "bad_config" / key
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes((w["model"] / "model.safetensors").read_bytes())
        (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    from safetensors.torch import load_file, save_file

    sd = load_file(str(w["model"] / "model.safetensors"))
    w["partial_model"] = t / "partial_model"
    w["partial_model"].mkdir()
    (w["partial_model"] / "config.json").write_text(json.dumps(cfg))
    keep = next(k for k in sorted(sd) if k.startswith("decoder."))
    save_file({keep: sd[keep]}, str(w["partial_model"] / "model.safetensors"))
    w["corrupt_pth"] = t / "corrupt.pth"
    w["corrupt_pth"].write_bytes(b"\x80\x02corrupt garbage here")
    w["nested"], w["outside"] = t / "nested", t / "outside"
    _png(w["nested"] / "sub" / "q.png", np.full((40, 48, 3), 90, np.uint8))
    (w["outside"]).mkdir()
    (w["outside"] / "q.png").write_bytes(b"a file of someone else, outside --out")
    w["plans"] = t / "plans"
    w["plans"].mkdir()
    for key, name, scale in (
        ("escape", '"../../../escaped_run"', 1),
        ("absolute", f'"{t}/abs_run"', 1),
        ("dot", '"."', 1),
        ("scale_str", '"r"', '"big"'),
        ("scale_neg", '"r"', -3),
        ("ok", '"r"', 1),
    ):
        (w["plans"] / f"{key}.toml").write_text(PLAN.format(name=name, scale=scale))
    (w["plans"] / "latin1.toml").write_bytes(PLAN.format(name='"r"', scale=1).encode() + b"# caf\xe9\n")
    w["fifo"] = t / "fifo.png"
    os.mkfifo(w["fifo"])
    w["wide"] = _png(t / "wide" / "wide.png", np.full((1, 70000, 3), 120, np.uint8))
    for ext, options in (("mkv", {}), ("mp4", {"movflags": "faststart"})):  # 30 frames, cut to 60% of the bytes
        data = _clip(t / f"whole.{ext}", 30, options).read_bytes()
        (t / f"whole.{ext}").unlink()
        (t / "cut").mkdir(exist_ok=True)
        (t / "cut" / f"cut.{ext}").write_bytes(data[: int(len(data) * 0.6)])
    for name, (h, wd) in (("exif_square", (40, 40)), ("exif_turned", (40, 48))):  # tag 6: read turned 90 degrees
        root = _dataset(t / name, n=1)
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.open(root / "images" / "s0.png").convert("RGB").resize((wd, h)).save(
            root / "images" / "s0.jpg", exif=exif
        )
        (root / "images" / "s0.png").unlink()
        Image.open(root / "masks" / "s0.png").resize((wd, h), Image.Resampling.NEAREST).save(root / "masks" / "s0.png")
        w[name] = root


def _no_fsync_space(monkeypatch) -> None:
    """A disk that fills while a file is written: the OSError carries no file name (as the kernel's)."""
    import glassgem.io

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(glassgem.io.os, "fsync", no_space)


def _read_only_out(monkeypatch) -> None:
    import glassgem.inference.predict as predict

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(predict.tempfile, "TemporaryFile", refuse)


@contextlib.contextmanager
def _folder(out: Path, world) -> Iterator[None]:
    out.mkdir(parents=True)
    yield


@contextlib.contextmanager
def _link_out(out: Path, world) -> Iterator[None]:
    """--out holds a folder symlink to a folder outside it, named as a subfolder of the input."""
    out.mkdir(parents=True)
    (out / "sub").symlink_to(world["outside"], target_is_directory=True)
    yield


@contextlib.contextmanager
def _locked(out: Path, world) -> Iterator[None]:
    from glassgem.locks import folder_lock

    with folder_lock(out / "run" if (out / "run").exists() else out):
        yield


@contextlib.contextmanager
def _locked_run(out: Path, world) -> Iterator[None]:
    (out / "run").mkdir(parents=True)
    with _locked(out, world):
        yield


def _earlier(*argv: str) -> Callable:
    """A setup that runs an earlier command (formatted like the row) into the row's --out first."""

    @contextlib.contextmanager
    def setup(out: Path, world) -> Iterator[None]:
        fmt = {k: str(v) for k, v in world.items()} | {"out": str(out)}
        assert main([a.format(**fmt) for a in argv]) == 0
        yield

    return setup
