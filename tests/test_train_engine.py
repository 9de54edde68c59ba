"""The training loop as a user runs it: overfitting, exact resume after SIGKILL, multi-process
equivalence, bad data failing before the first step."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassgem.config import apply_overrides, train_preset
from glassgem.data.layouts import find_pairs
from glassgem.train.engine import RunData, Trainer

GLASSGEM = [sys.executable, "-m", "glassgem.cli"]


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured wall (high-frequency noise) with one smooth, bluish 'pane' (the glass)."""
    img = rng.integers(60, 200, size=(h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    y0, x0 = rng.integers(0, h // 3), rng.integers(0, w // 3)
    y1, x1 = y0 + rng.integers(h // 3, h // 2), x0 + rng.integers(w // 3, w // 2)
    mask[y0:y1, x0:x1] = 1
    yy, xx = np.mgrid[0:h, 0:w]
    pane = np.stack([90 + 40 * yy / h, 140 + 30 * xx / w, 200 + 0 * xx], axis=-1)
    img[mask == 1] = pane[mask == 1]
    return img.clip(0, 255).astype(np.uint8), mask


def make_dataset(root: Path, n: int, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        img, mask = _scene(rng, h, w)
        Image.fromarray(img).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"s{i:02d}.png")
    return root


def read_log(run: Path) -> dict[int, dict[str, float]]:
    with open(run / "log.csv", newline="") as f:
        return {int(r["step"]): {k: float(v) for k, v in r.items()} for r in csv.DictReader(f)}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="true")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_debug_model_overfits_eight_images(tmp_path):
    """A debug-preset GEM learns 8 scenes to IoU > 0.9 on CPU (whole images, no cropping)."""
    data = make_dataset(tmp_path / "data", 8, 128, 128)
    cfg = apply_overrides(
        train_preset("debug"),
        [
            "max_iter=240",
            "lr_steps=[200]",
            "batch_size=4",
            "min_sizes=[128]",
            "crop_size=128",
            "eval_period=1000",
            "checkpoint_period=1000",
            "log_period=40",
            "eval_size=128",
        ],
    )
    pairs = find_pairs(data)
    torch.set_num_threads(2)
    Trainer(cfg, RunData(pairs, pairs), tmp_path / "run", progress=False).train()
    import json

    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["iou"] > 0.9, best
    log = read_log(tmp_path / "run")
    assert log[max(log)]["loss"] < 0.5 * log[min(log)]["loss"]


@pytest.mark.slow
def test_sigkill_and_resume_replays_the_same_losses(tmp_path):
    data = make_dataset(tmp_path / "data", 12, 96, 128)
    args = [
        "--preset",
        "debug",
        "--data",
        str(data),
        "--set",
        "max_iter=9",
        "checkpoint_period=2",
        "log_period=1",
        "batch_size=2",
        "num_points=256",
    ]
    straight = tmp_path / "straight"
    subprocess.run(GLASSGEM + ["train", *args, "--out", str(straight)], check=True, env=_env(), capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        GLASSGEM + ["train", *args, "--out", str(killed)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "checkpoints" / "step_0000004.pt").exists():
        time.sleep(0.05)
    while time.time() < deadline and len(read_log(killed) if (killed / "log.csv").exists() else {}) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_steps = max(read_log(killed))
    assert killed_steps < 9, "the run finished before it could be killed"
    subprocess.run(
        GLASSGEM + ["train", *args, "--out", str(killed), "--resume"], check=True, env=_env(), capture_output=True
    )
    a, b = read_log(straight), read_log(killed)
    assert sorted(a) == sorted(b) == list(range(1, 10))
    for step in a:
        for key in ("loss", "loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_proposal"):
            assert abs(a[step][key] - b[step][key]) <= 1e-6 * max(1.0, abs(a[step][key])), (step, key)
    # no temporary files left behind, last K = 3 checkpoints kept
    ckpts = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert ckpts == ["step_0000006.pt", "step_0000008.pt", "step_0000009.pt"]


def test_resume_keeps_the_runs_settings_and_applies_only_new_overrides(tmp_path, capsys):
    """`--resume` starts from the run's config.json, not the preset: a fine-tune started with a custom
    lr and scales keeps them when resumed with just a longer schedule."""
    import json

    from glassgem.cli import main

    data = make_dataset(tmp_path / "data", 4, 96, 96)
    run = tmp_path / "run"
    base = ["train", "--preset", "debug", "--data", str(data), "--out", str(run)]
    torch.set_num_threads(1)
    assert (
        main(
            base
            + [
                "--set",
                "max_iter=2",
                "checkpoint_period=2",
                "batch_size=2",
                "num_points=256",
                "lr=3e-5",
                "min_sizes=[96,112]",
                "crop_size=96",
            ]
        )
        == 0
    )
    assert main(base + ["--resume", "--set", "max_iter=3", "lr_steps=[2]"]) == 0
    assert "resuming with the settings in" in capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lr"] == 3e-5 and cfg["min_sizes"] == [96, 112] and cfg["crop_size"] == 96
    assert cfg["max_iter"] == 3 and cfg["lr_steps"] == [2] and cfg["num_points"] == 256
    assert max(read_log(run)) == 3
    (run / "config.json").write_text("{not json")
    assert main(base + ["--resume"]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_give_the_same_first_step_loss_as_one(tmp_path):
    """Same global batch of 4 on 1 process and on 2 gloo processes (torchrun): the first-step loss agrees.
    Images are larger than the crop (no padding) and every crop holds both classes, so every
    per-process mean has the same denominator as the global one."""
    data = make_dataset(tmp_path / "data", 8, 160, 160, seed=3)
    args = [
        "train",
        "--preset",
        "debug",
        "--data",
        str(data),
        "--set",
        "max_iter=1",
        "batch_size=4",
        "log_period=1",
        "min_sizes=[160]",
        "crop_size=128",
        "num_points=512",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(GLASSGEM + args + ["--out", str(one)], check=True, env=_env(), capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    res = subprocess.run(
        torchrun + ["-m", "glassgem.cli"] + args + ["--out", str(two)], env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    assert json.loads((two / "run_info.json").read_text())["num_processes"] == 2
    assert json.loads((one / "run_info.json").read_text())["num_processes"] == 1
    l1, l2 = read_log(one)[1]["loss"], read_log(two)[1]["loss"]
    assert abs(l1 - l2) <= 1e-4 * abs(l1), (l1, l2)


@pytest.mark.slow
def test_bad_data_fails_before_the_first_step(tmp_path):
    data = make_dataset(tmp_path / "data", 4, 64, 64)
    (data / "images" / "s01.png").write_bytes(b"not a png at all")
    res = subprocess.run(
        GLASSGEM + ["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "run")],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "s01.png" in res.stderr and "dataset check failed" in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_init_from_takes_every_weight_of_the_source(tmp_path):
    from glassgem import GEM
    from glassgem.errors import CheckpointError
    from glassgem.train.engine import build_model

    torch.manual_seed(1)
    source = GEM(train_preset("debug").model)
    source.save_pretrained(tmp_path / "pre")
    cfg = train_preset("debug")
    torch.manual_seed(2)  # a different random start: every weight must come from the source
    fresh = build_model(cfg).state_dict()
    cfg.init_from = str(tmp_path / "pre")
    torch.manual_seed(2)
    tuned = build_model(cfg).state_dict()
    src = source.state_dict()
    assert set(tuned) == set(src)
    assert all(torch.equal(tuned[k], src[k]) for k in src)
    assert any(not torch.equal(fresh[k], src[k]) for k in src)
    cfg.init_from = str(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="missing"):
        build_model(cfg)


@pytest.mark.parametrize("hold", [True, False])
def test_freeze_encoder_bn_keeps_the_running_statistics_and_trains_the_affine(tmp_path, hold):
    """freeze_encoder_bn=true: the EfficientNet's BatchNorm statistics stay as loaded through training steps
    and a validation in between, while their scale and shift still train; without it the statistics move."""
    data = make_dataset(tmp_path / "data", 4, 128, 128)
    cfg = apply_overrides(
        train_preset("gem-lite"),
        [
            "encoder_init=random",
            f"freeze_encoder_bn={str(hold).lower()}",
            "max_iter=3",
            "lr_steps=[100]",
            "batch_size=2",
            "min_sizes=[128]",
            "crop_size=128",
            "num_points=256",
            "num_workers=0",
            "eval_period=1",
            "checkpoint_period=1000",
            "eval_size=128",
        ],
    )
    pairs = find_pairs(data)
    trainer = Trainer(cfg, RunData(pairs, pairs[:1]), tmp_path / "run", progress=False)
    bns = [m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 10
    before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in bns]
    trainer.train()
    stats_same = all(torch.equal(m.running_mean, mean) for m, (mean, _) in zip(bns, before))
    affine_moved = any(not torch.equal(m.weight.detach(), w) for m, (_, w) in zip(bns, before))
    assert stats_same == hold
    assert affine_moved
    assert all(m.training != hold for m in bns)  # still held after the validations between steps
