"""`glassgem experiment`: the shipped plans, the smoke budget end to end (table3 on generated data), resuming,
and one-line errors for bad input."""

from __future__ import annotations

import csv
import json

import pytest

from glassgem.cli import main
from glassgem.errors import ConfigError
from glassgem.experiments.execute import preflight
from glassgem.experiments.plan import BUDGETS, list_plans, load_plan, split_overrides

SHIPPED = ("table2", "table3", "table4-dqs", "table4-init", "table4-prompts")


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def table3_smoke(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("exp") / "t3"
    threads = torch.get_num_threads()
    assert main(["experiment", "run", "table3", "--budget", "smoke", "--out", str(out), "--quiet"]) == 0
    assert torch.get_num_threads() == threads  # the smoke budget's one thread is given back
    return out


@pytest.mark.slow
def test_table3_smoke_writes_one_row_per_scale_and_paradigm(table3_smoke):
    rows = _rows(table3_smoke)
    assert len(rows) == 8
    assert {(r["scale"], r["paradigm"]) for r in rows} == {
        (s, p) for s in ("1", "5", "10", "20") for p in ("zero-shot", "fine-tuned")
    }
    for r in rows:
        assert r["status"] == "done" and 0.0 <= float(r["iou"]) <= 1.0 and int(r["n_images"]) == 4
    paper = {r["scale"]: r["paper_iou"] for r in rows if r["paradigm"] == "fine-tuned"}
    assert paper == {"1": "0.7550", "5": "0.7570", "10": "0.7640", "20": "0.7700"}
    # the pretraining sets grow with the scale: 1x = 4 real scenes, 20x = 80 synthetic scenes
    cfg = json.loads((table3_smoke / "runs" / "20x" / "finetune" / "config.json").read_text())
    assert cfg["init_from"].endswith("runs/20x/pretrain/final") and cfg["max_iter"] == 2
    assert len(list((table3_smoke / "data" / "synthetic" / "images").iterdir())) == 80


@pytest.mark.slow
def test_table3_smoke_report_and_plot(table3_smoke):
    md = (table3_smoke / "results.md").read_text()
    assert "procedural stand-in" in md and "not the paper's Stable Diffusion" in md
    assert "| S-GSD-20x | 20× |" in md and ".770" in md  # the paper's number beside ours
    png = (table3_smoke / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_resumes_a_missing_stage(table3_smoke, monkeypatch):
    import shutil

    import glassgem.experiments.execute as execute

    built = []
    real = execute.Trainer

    class Counting(real):
        def __init__(self, cfg, data, out_dir, **kw):
            built.append(str(out_dir))
            super().__init__(cfg, data, out_dir, **kw)

    monkeypatch.setattr(execute, "Trainer", Counting)
    before = _rows(table3_smoke)
    assert main(["experiment", "run", "table3", "--out", str(table3_smoke), "--quiet"]) == 0
    assert built == [] and _rows(table3_smoke) == before
    # an interrupted fine-tune (no final/, no score yet) continues from its checkpoint; nothing else runs
    shutil.rmtree(table3_smoke / "runs" / "5x" / "finetune" / "final")
    (table3_smoke / "runs" / "5x" / "fine-tuned.json").unlink()
    assert main(["experiment", "run", "table3", "--out", str(table3_smoke), "--quiet"]) == 0
    assert built == [str(table3_smoke / "runs" / "5x" / "finetune")]
    assert _rows(table3_smoke) == before  # the resumed stage's model and score are the same


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(table3_smoke, capsys):
    assert main(["experiment", "run", "table3", "--out", str(table3_smoke), "--set", "lr=1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "choose another --out" in err


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "argv,names",
    [
        (["run", "table9"], "unknown plan 'table9'"),
        (["run", "table3", "--budget", "gpu"], "unknown budget 'gpu'"),
        (["run", "table3", "--set", "data.gdd=/x"], "no data set 'gdd'"),
        (["run", "table3", "--set", "not_a_field=1"], "unknown config key 'not_a_field'"),
        (["run", "table3", "--set", "budget.steps=4"], "unknown field 'steps'"),
        (["run", "table3", "--set", "lr"], "not of the form key=value"),
        (["run", "table3", "--only", "30x"], "--only 30x"),
        (["run", "missing.toml"], "missing.toml: plan file not found"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, capsys, argv, names):
    out = tmp_path / "out"
    assert main(["experiment", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glassgem: error:") and err.count("\n") == 0 and names in err
    assert not out.exists()  # refused before anything was written


def test_bad_toml_plan(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[runs]\n')
    assert main(["experiment", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: not valid TOML" in err and "Traceback" not in err
    odd = tmp_path / "odd.toml"
    odd.write_text('name = "x"\n[[runs]]\nname = "a"\npretrain = "nowhere"\n')
    assert main(["experiment", "run", str(odd), "--out", str(tmp_path / "o")]) == 2
    assert "uses data set 'nowhere'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ plans
def test_list_names_every_plan_and_budget(capsys):
    assert [n for n, _ in list_plans()] == sorted(SHIPPED)
    assert main(["experiment", "list"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in SHIPPED) and all(b in text for b in BUDGETS)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("budget", ["smoke", "cpu"])
def test_shipped_plans_build_every_run(name, budget):
    plan = load_plan(name)
    ov = split_overrides(plan, [])
    configs, skipped = preflight(plan, plan.budget(budget), ov.config, plan.data)
    assert set(configs) | set(skipped) == {r.name for r in plan.runs}
    assert all(r.optional for r in plan.runs if r.name in skipped)


def test_paper_budget_needs_the_sam_file_and_says_which():
    plan = load_plan("table3")
    with pytest.raises(ConfigError, match="run 1x: encoder_init=sam needs encoder_weights=PATH .*mobile_sam.pt"):
        preflight(plan, plan.budget("paper"), [], plan.data)
    configs, _ = preflight(plan, plan.budget("paper"), ["encoder_weights=mobile_sam.pt"], plan.data)
    assert configs["20x"].model.encoder == "tinyvit" and configs["20x"].batch_size == 32


def test_skipped_runs_say_why():
    init = load_plan("table4-init")
    _, skipped = preflight(init, init.budget("smoke"), [], init.data)
    assert set(skipped) == {"imagenet", "sam"} and "debug encoder" in skipped["sam"]
    _, skipped = preflight(init, init.budget("cpu"), [], init.data)  # GEM-Lite ships ImageNet weights
    assert set(skipped) == {"sam"} and "efficientnet_lite0" in skipped["sam"]
    data = {**init.data, "sam_weights": "mobile_sam.pt"}
    configs, skipped = preflight(init, init.budget("paper"), [], data)
    assert configs["sam"].encoder_weights == "mobile_sam.pt" and "tiny_vit_5m_224" in skipped["imagenet"]
    t2 = load_plan("table2")
    _, skipped = preflight(t2, t2.budget("smoke"), [], t2.data)
    assert skipped == {k: f"needs data.{k}=DIR (no stand-in for it)" for k in ("gdd", "gsd")}


def test_ablation_switches_reach_the_configs():
    dqs = load_plan("table4-dqs")
    configs, _ = preflight(dqs, dqs.budget("smoke"), [], dqs.data)
    got = {n: (c.model.use_dqs, c.proposal_weight) for n, c in configs.items()}
    assert got == {"baseline": (False, 0.0), "loss": (False, 80.0), "dqs": (True, 0.0), "both": (True, 80.0)}


def test_print_gives_one_command_per_run(capsys):
    assert (
        main(
            [
                "experiment",
                "run",
                "table3",
                "--out",
                "D",
                "--budget",
                "paper",
                "--print",
                "--set",
                "data.real=GSD-S",
                "encoder_weights=mobile_sam.pt",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].endswith("--only 1x")
    assert "--set data.real=GSD-S encoder_weights=mobile_sam.pt" in lines[-1]


# ------------------------------------------- corpus backgrounds, glass-free scenes, false glass, scale base
def _photos(folder, n, masks=False):
    import numpy as np
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    if masks:
        (folder / "masks").mkdir()
    rng = np.random.default_rng(len(str(folder)))
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / "images" / f"p{k}.png")
        if masks:
            Image.fromarray(np.zeros((60, 80), np.uint8)).save(folder / "masks" / f"p{k}.png")
    return folder


def test_backgrounds_glass_free_photos_and_false_glass_columns(tmp_path):
    bg = _photos(tmp_path / "corpus" / "train", 2, masks=True)  # a `data photos` split: images/ + masks/
    _photos(tmp_path / "corpus" / "heldout", 3, masks=True)
    out = tmp_path / "t3"
    assert (
        main(
            [
                "experiment",
                "run",
                "table3",
                "--budget",
                "smoke",
                "--out",
                str(out),
                "--quiet",
                "--only",
                "1x",
                "--set",
                f"data.backgrounds={bg}",
                f"data.glass_free={tmp_path / 'corpus'}",
                "budget.scale_base=3",
            ]
        )
        == 0
    )
    synth = out / "data" / "synthetic"
    config = json.loads((synth / "synth_config.json").read_text())
    assert config["glass_free"] == BUDGETS["smoke"].standin_glass_free == 0.2
    assert config["backgrounds"]["names"] == ["p0.png", "p1.png"]  # its images, never its masks
    records = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 60  # 20 x scale_base, not 20 x the 4 real scenes
    assert sum(r["mode"] == "glass_free_photo" for r in records) == 12
    assert json.loads((out / "runs" / "1x" / "pretrain" / "config.json").read_text())["max_iter"] == 2
    rows = {(r["run"], r["paradigm"]): r for r in _rows(out)}
    for paradigm in ("zero-shot", "fine-tuned"):
        r = rows[("1x", paradigm)]
        assert r["status"] == "done" and 0.0 <= float(r["false_glass"]) <= 1.0
        assert 0 <= int(r["clean"]) <= 3 and r["n_glass_free"] == "3"  # heldout/ only, not train/
    assert rows[("20x", "fine-tuned")]["false_glass"] == "" and rows[("20x", "fine-tuned")]["status"] == "not run yet"
    md = (out / "results.md").read_text()
    assert "| false glass | clean |" in md and "3 glass-free photos" in md and "/3 |" in md


def test_glass_free_data_is_never_a_training_split(tmp_path, capsys):
    _photos(tmp_path / "corpus" / "train", 2, masks=True)
    assert (
        main(
            [
                "experiment",
                "run",
                "table3",
                "--budget",
                "smoke",
                "--out",
                str(tmp_path / "o"),
                "--set",
                f"data.glass_free={tmp_path / 'corpus'}",
            ]
        )
        == 2
    )
    assert "no heldout/test/val" in capsys.readouterr().err


def test_a_run_cannot_train_on_an_aux_data_key():
    from glassgem.experiments.plan import parse_plan

    text = 'name = "x"\n[data]\nbackgrounds = ""\n[[runs]]\nname = "a"\nfinetune = "backgrounds"\n'
    with pytest.raises(ConfigError, match="not a training set"):
        parse_plan(text, "x.toml")
