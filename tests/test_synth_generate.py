"""S-GSD generation on tiny offline components: the job plan, outputs in the dataset layout, restart
after a crash, sharding, the CLIP filter, and the whole chain fine-tune -> generate -> check -> train."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import glassgem.synth.diffusion.generate as gen_mod
from glassgem.cli import main
from glassgem.data.checks import check_dataset
from glassgem.errors import ConfigError, DataError
from glassgem.synth import manifest
from glassgem.synth.diffusion.controlnet_data import EvalSplitError
from glassgem.synth.diffusion.generate import GenerateConfig, find_masks, generate, generation_size, plan_jobs
from glassgem.synth.diffusion.prompts import expand
from synth_fixtures import make_tiny_clip, write_masks, write_pairs

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate")
PROMPTS = expand()


def _config(masks: Path, out: Path, sd: Path, cn: Path, **kw) -> GenerateConfig:
    base = dict(
        masks=str(masks),
        controlnet=str(cn),
        out=str(out),
        base=str(sd),
        scale=2,
        steps=2,
        resolution=64,
        progress=False,
    )
    return GenerateConfig(**{**base, **kw})


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _files(out: Path) -> dict[str, bytes]:
    return {f"{d}/{p.name}": p.read_bytes() for d in ("images", "masks") for p in sorted((out / d).iterdir())}


@pytest.fixture(scope="module")
def masks_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("masks")
    write_masks(folder, n=2, size=(64, 64))
    return folder


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, masks_dir, tiny_sd, tiny_cn) -> Path:
    """A reference generation that nothing interrupted, run through the CLI."""
    out = tmp_path_factory.mktemp("clean")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            [
                "synth",
                "generate",
                "--masks",
                str(masks_dir),
                "--controlnet",
                str(tiny_cn),
                "--out",
                str(out),
                "--base",
                str(tiny_sd),
                "--scale",
                "2",
                "--steps",
                "2",
                "--resolution",
                "64",
            ]
        )
    finally:
        torch.set_num_threads(n)
    assert code == 0
    return out


# ------------------------------------------------------------------------------ the plan
def test_job_seed_and_prompt_depend_only_on_seed_stem_and_k(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    both = plan_jobs([a, b], scale=3, seed=0, prompts=PROMPTS)
    only_b = plan_jobs([b], scale=3, seed=0, prompts=PROMPTS)
    assert [j.id for j in both] == ["a_0", "a_1", "a_2", "b_0", "b_1", "b_2"]
    assert [j.index for j in both] == list(range(6))
    assert [(j.seed, j.prompt) for j in both[3:]] == [(j.seed, j.prompt) for j in only_b]
    assert len({j.seed for j in both}) == 6
    assert len({j.prompt for j in both[:3]}) == 3  # a mask's samples get different prompts
    other = plan_jobs([a, b], scale=3, seed=1, prompts=PROMPTS)
    assert all(x.seed != y.seed for x, y in zip(both, other))
    single = plan_jobs([a, b], scale=3, seed=0, prompts=PROMPTS[:1])
    assert {j.prompt for j in single} == {"a photo of a clean transparent glasses"}


def test_prompts_are_used_evenly(tmp_path):
    jobs = plan_jobs([tmp_path / f"m{i}.png" for i in range(46)], scale=5, seed=0, prompts=PROMPTS)
    counts = np.bincount([PROMPTS.index(j.prompt) for j in jobs], minlength=23)
    assert counts.sum() == 230 and counts.min() >= 4  # 10 per prompt on average, none starved


def test_generation_size_keeps_aspect_and_multiples():
    assert generation_size(64, 64, 64, 4) == (64, 64)
    assert generation_size(480, 640, 512, 64) == (512, 704)
    assert generation_size(40, 56, 32, 4) == (32, 44)
    h, w = generation_size(100, 1000, 512, 64)  # a panorama is shrunk to a long side of 2 x 512
    assert w == 1024 and h % 64 == 0 and h >= 64


def test_find_masks(tmp_path):
    root = tmp_path / "set"
    write_masks(root / "masks", n=3)
    (root / "masks" / ".m0.png.tmp").write_bytes(b"")  # a temporary of an atomic write is not a mask
    assert [p.name for p in find_masks(root)] == ["m0.png", "m1.png", "m2.png"]  # a dataset root works
    assert find_masks(root / "masks") == find_masks(root)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "m1.bmp")
    with pytest.raises(DataError, match="'m1' names several masks"):
        find_masks(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no mask files"):
        find_masks(tmp_path / "empty")
    write_masks(tmp_path / "gsds" / "validation" / "masks", n=1)
    with pytest.raises(EvalSplitError, match="--allow-eval-masks"):
        find_masks(tmp_path / "gsds" / "validation")
    assert len(find_masks(tmp_path / "gsds" / "validation", allow_eval_masks=True)) == 1


# ------------------------------------------------------------------------------ outputs and restart
def test_clean_run_writes_the_dataset_layout(clean_run, masks_dir):
    recs = _records(clean_run)
    assert [r["id"] for r in recs] == ["m0_0", "m0_1", "m1_0", "m1_1"]
    for r in recs:
        image = Image.open(clean_run / r["image"])
        assert r["image"].endswith(".jpg") and image.size == (64, 64) and image.mode == "RGB"
        mask = np.asarray(Image.open(clean_run / r["mask"]))
        source = np.asarray(Image.open(masks_dir / f"{r['stem']}.png"))
        assert np.array_equal(mask > 0, source > 0)
        assert r["kept"] and r["clip_score"] is None and r["steps"] == 2 and r["prompt"] in PROMPTS
        assert r["seed"] == gen_mod.job_seed(0, r["stem"], r["k"]) and r["base"] and r["controlnet"]
    assert not list(clean_run.glob(manifest.SHARD_GLOB))
    report = check_dataset(clean_run)
    assert report.ok and report.n_pairs == 4 and report.layout == "sgsd"
    # two samples of one mask differ (different seeds and prompts)
    a, b = (np.asarray(Image.open(clean_run / "images" / f"m0_{k}.jpg")).astype(int) for k in (0, 1))
    assert np.abs(a - b).mean() > 1


class _Crash(Exception):
    pass


def test_interrupted_run_redoes_exactly_the_missing_jobs(tmp_path, clean_run, masks_dir, tiny_sd, tiny_cn):
    out = tmp_path / "out"
    cfg = _config(masks_dir, out, tiny_sd, tiny_cn)

    def crash_after_two(job, record):
        if len(list((out / "images").iterdir())) == 2:
            raise _Crash()

    with pytest.raises(_Crash):
        generate(cfg, on_job_done=crash_after_two)
    assert len(manifest.read_records(out)) == 2 and not (out / "manifest.jsonl").exists()
    with open(manifest.shard_path(out, 0), "ab") as f:
        f.write(b'{"id": "m1_0", "kept": tr')  # a record torn by the kill: that job is not finished

    redone = []
    summary = generate(cfg, on_job_done=lambda job, record: redone.append(job.id))
    assert redone == ["m1_0", "m1_1"]
    assert summary["done_before"] == 2 and summary["generated"] == 2 and summary["kept"] == 4
    assert [r["id"] for r in _records(out)] == ["m0_0", "m0_1", "m1_0", "m1_1"]
    assert _files(out) == _files(clean_run)  # byte for byte what an uninterrupted run wrote

    # a job whose image vanished is redone; a rerun with everything present does nothing
    (out / "images" / "m0_1.jpg").unlink()
    redone.clear()
    generate(cfg, on_job_done=lambda job, record: redone.append(job.id))
    assert redone == ["m0_1"] and _files(out) == _files(clean_run)
    assert generate(cfg)["generated"] == 0


def test_continuing_with_other_sampler_settings_is_refused(clean_run, masks_dir, tiny_sd, tiny_cn):
    with pytest.raises(ConfigError, match="m0_0 was made with steps=2"):
        generate(_config(masks_dir, clean_run, tiny_sd, tiny_cn, steps=3))


def test_processes_split_the_jobs_and_the_main_one_merges(
    tmp_path, monkeypatch, clean_run, masks_dir, tiny_sd, tiny_cn
):
    out = tmp_path / "sharded"
    cfg = _config(masks_dir, out, tiny_sd, tiny_cn)
    done: dict[int, list[str]] = {0: [], 1: []}
    for rank in (1, 0):  # process 1 finishes first; process 0 (main) merges after the barrier
        state = SimpleNamespace(
            process_index=rank,
            num_processes=2,
            is_main_process=rank == 0,
            device=torch.device("cpu"),
            wait_for_everyone=lambda: None,
        )
        monkeypatch.setattr("accelerate.PartialState", lambda cpu=False: state)
        generate(cfg, on_job_done=lambda job, record, r=rank: done[r].append(job.id))
        if rank == 1:
            assert manifest.shard_path(out, 1).is_file() and not (out / "manifest.jsonl").exists()
    assert done == {0: ["m0_0", "m1_0"], 1: ["m0_1", "m1_1"]}  # job i -> process i % 2
    assert [r["id"] for r in _records(out)] == ["m0_0", "m0_1", "m1_0", "m1_1"]
    assert not list(out.glob(manifest.SHARD_GLOB))
    assert _files(out) == _files(clean_run)


def test_clip_filter_scores_drops_and_remembers(tmp_path, tiny_sd, tiny_cn):
    clip = make_tiny_clip(tmp_path / "clip")
    masks = tmp_path / "masks"
    write_masks(masks, n=2, size=(40, 56))  # not square, not the generation size
    kept_out, dropped_out = tmp_path / "kept", tmp_path / "dropped"
    kept = generate(
        _config(
            masks,
            kept_out,
            tiny_sd,
            tiny_cn,
            scale=1,
            resolution=32,
            clip_filter=str(clip),
            min_score=-101.0,
            image_format="png",
        )
    )
    assert kept["kept"] == 2 and kept["dropped"] == 0
    for r in _records(kept_out):
        assert -100.0 <= r["clip_score"] <= 100.0 and r["clip_model"] == str(clip)
        assert Image.open(kept_out / r["image"]).size == (56, 40)  # back at the mask's size
    dropped = generate(
        _config(
            masks,
            dropped_out,
            tiny_sd,
            tiny_cn,
            scale=1,
            resolution=32,
            clip_filter=str(clip),
            min_score=101.0,
            image_format="png",
        )
    )
    assert dropped["kept"] == 0 and dropped["dropped"] == 2
    recs = _records(dropped_out)
    assert [r["kept"] for r in recs] == [False, False] and all(r["image"] is None for r in recs)
    assert [r["clip_score"] for r in recs] == [r["clip_score"] for r in _records(kept_out)]
    assert not (dropped_out / "images").exists() or not list((dropped_out / "images").iterdir())
    again = generate(
        _config(
            masks,
            dropped_out,
            tiny_sd,
            tiny_cn,
            scale=1,
            resolution=32,
            clip_filter=str(clip),
            min_score=101.0,
            image_format="png",
        )
    )
    assert again["generated"] == 0 and again["dropped"] == 2  # dropped jobs are not redone


def test_option_errors(tmp_path, masks_dir):
    for bad, match in (
        (dict(scale=0), "--scale"),
        (dict(clip_filter="x"), "go together"),
        (dict(image_format="gif"), "jpg or png"),
        (dict(scheduler="magic"), "--scheduler"),
    ):
        with pytest.raises(ConfigError, match=match):
            generate(_config(masks_dir, tmp_path / "o", tmp_path, tmp_path, **bad))
    code = main(
        [
            "synth",
            "generate",
            "--masks",
            str(masks_dir),
            "--controlnet",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--base",
            str(tmp_path / "no-sd"),
            "--steps",
            "1",
        ]
    )
    assert code == 2


def test_missing_models_are_checkpoint_errors(tmp_path, masks_dir, tiny_sd, capsys):
    code = main(
        [
            "synth",
            "generate",
            "--masks",
            str(masks_dir),
            "--controlnet",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--base",
            str(tiny_sd),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "ControlNet not found" in err
    code = main(
        [
            "synth",
            "generate",
            "--masks",
            str(masks_dir),
            "--controlnet",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--base",
            str(masks_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not a Stable Diffusion folder" in err and "unet/" in err


# ------------------------------------------------------------------------------ the whole chain
def test_finetune_generate_check_and_train_gem(tmp_path, tiny_sd, tiny_cn):
    from glassgem.synth.diffusion.controlnet import FinetuneConfig, finetune_controlnet

    data = write_pairs(tmp_path / "real", n=2, size=(64, 64))
    run = tmp_path / "cn_run"
    ft = dict(
        data=str(data),
        out=str(run),
        base=str(tiny_sd),
        init_controlnet=str(tiny_cn),
        resolution=64,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        validate_every=0,
        num_workers=0,
        progress=False,
    )
    assert finetune_controlnet(FinetuneConfig(**ft, max_steps=2))["step"] == 2
    assert finetune_controlnet(FinetuneConfig(**ft, max_steps=3, resume=True))["start_step"] == 2

    out = tmp_path / "sgsd"
    summary = generate(_config(data / "masks", out, tiny_sd, run / "controlnet"))
    assert summary["kept"] == 4 and len(list((out / "images").iterdir())) == 4
    assert main(["data", "check", str(out)]) == 0

    code = main(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(out),
            "--out",
            str(tmp_path / "gem"),
            "--max-steps",
            "1",
            "--set",
            "batch_size=2",
            "max_iter=1",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "gem" / "log.csv")))  # one GEM step on the synthetic set
    assert len(rows) == 1 and int(rows[0]["step"]) == 1 and np.isfinite(float(rows[0]["loss"]))
    assert (tmp_path / "gem" / "final").is_dir()
