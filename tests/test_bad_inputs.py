"""One table of bad inputs x commands. Every row runs the `glassgem` command in-process and asserts:
its exit code; one error line naming the file or option (no traceback); and that the files the row
protects (earlier results, inputs) are unchanged, no temporary or half-written file is left and nothing is
written beside the row's output folder (a refused command writes nothing at all).

Everything is tiny and generated here: 48x40 photos, the debug model (128²), no network, no GPU."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_input_fixtures import (
    BAD_CONFIGS,
    _dataset,
    _earlier,
    _folder,
    _link_out,
    _locked,
    _locked_run,
    _no_fsync_space,
    _png,
    _read_only_out,
    _safety_world,
)
from glassgem.cli import main
from glassgem.config import train_preset

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ the world
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Inputs shared by the rows (never modified by them: every row checks that)."""
    from glassgem import GEM

    t = tmp_path_factory.mktemp("world")
    w: dict[str, Path] = {"t": t}
    w["photos"] = t / "photos"
    for i in range(2):
        _png(w["photos"] / f"p{i}.png", np.full((40, 48, 3), 100 + i, np.uint8))
    w["data"] = _dataset(t / "data")
    w["corrupt_data"] = _dataset(t / "corrupt_data")
    (w["corrupt_data"] / "masks" / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    w["garbage"] = t / "garbage.jpg"
    w["garbage"].write_bytes(b"this is no JPEG")
    torch.manual_seed(0)
    debug = GEM.from_config("debug")
    w["model"] = debug.save_pretrained(t / "debug_model")
    nan = GEM.from_config("debug")
    with torch.no_grad():
        for p in nan.parameters():
            p.fill_(float("nan"))
    w["nan_model"] = nan.save_pretrained(t / "nan_model")
    other = GEM.from_config("debug")
    other.cfg.num_queries = 8
    w["other_model"] = GEM(other.cfg).save_pretrained(t / "other_model")
    w["random_pth"] = t / "random.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, w["random_pth"])
    w["pred"], w["gt"] = t / "pred", t / "gt"
    _png(w["pred"] / "a.png", np.zeros((20, 20), np.uint8))
    _png(w["gt"] / "a.png", np.zeros((24, 20), np.uint8))  # a size mismatch
    w["a_file"] = t / "a_file.txt"
    w["a_file"].write_text("not a folder")
    w["run"] = t / "run"  # an earlier training run: its files must survive a bad command
    (w["run"] / "checkpoints").mkdir(parents=True)
    (w["run"] / "checkpoints" / "step_0000010.pt").write_bytes(b"checkpoint bytes")
    (w["run"] / "log.csv").write_text("step,loss\n10,0.5\n")
    (w["run"] / "config.json").write_text(json.dumps(train_preset("debug").to_dict()))
    (w["run"] / "best").mkdir()
    w["loop"] = t / "loop"
    w["loop"].symlink_to(w["loop"])
    _safety_world(w)
    return w


# config.json fields of a model folder that must be refused on load (issue: each loaded or crashed late)
@dataclass
class Case:
    id: str
    argv: list[str]  # {name} placeholders from the world, {out}: a fresh folder of this row
    code: int
    names: tuple[str, ...]  # the error line contains each (after formatting)
    env: dict[str, str] = field(default_factory=dict)
    patch: Callable | None = None  # (monkeypatch) -> None, e.g. a full disk
    stream: str = "err"  # where the one error line is printed (data check reports on stdout)
    setup: Callable | None = None  # (out, world) -> a context held while the command runs (earlier results, a lock)
    absent: tuple[str, ...] = ()  # words the output must not contain


def _full_disk(monkeypatch) -> None:
    import glassgem.io

    def no_space(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(glassgem.io, "atomic_write", no_space)


TRAIN = [
    "train",
    "--preset",
    "debug",
    "--data",
    "{data}",
    "--out",
    "{out}/run",
    "--max-steps",
    "1",
    "--set",
    "max_iter=2",
    "batch_size=2",
    "num_points=64",
    "min_sizes=[64]",
    "crop_size=64",
]

CASES = [
    # predict
    Case("predict-missing-input", ["predict", "{t}/nope.jpg", "--out", "{out}"], 2, ("{t}/nope.jpg",)),
    Case(
        "predict-unreadable-photo",
        ["predict", "{garbage}", "--out", "{out}", "--weights", "{model}", "--quiet"],
        1,
        ("{garbage}", "cannot read"),
    ),
    Case("predict-size-0", ["predict", "{photos}", "--out", "{out}", "--size", "0"], 2, ("--size",)),
    Case("predict-size-huge", ["predict", "{photos}", "--out", "{out}", "--size", "100000"], 2, ("--size", "4096")),
    Case("predict-size-not-32", ["predict", "{photos}", "--out", "{out}", "--size", "100"], 2, ("--size", "32")),
    Case("predict-device-bogus", ["predict", "{photos}", "--out", "{out}", "--device", "bogus"], 2, ("--device",)),
    Case(
        "predict-out-is-a-file", ["predict", "{photos}", "--out", "{a_file}", "--weights", "{model}"], 2, ("{a_file}",)
    ),
    Case("predict-out-is-input", ["predict", "{photos}", "--out", "{photos}"], 2, ("--out", "{photos}")),
    Case("predict-out-symlink-loop", ["predict", "{photos}", "--out", "{loop}"], 2, ("{loop}",)),
    Case(
        "predict-weights-missing", ["predict", "{photos}", "--out", "{out}", "--weights", "{t}/none"], 2, ("{t}/none",)
    ),
    Case(
        "predict-weights-random-pth",
        ["predict", "{photos}", "--out", "{out}", "--weights", "{random_pth}"],
        2,
        ("{random_pth}", "put its config.json beside it"),
    ),
    Case(
        "predict-weights-nan",
        ["predict", "{photos}", "--out", "{out}", "--weights", "{nan_model}"],
        2,
        ("nan_model", "NaN"),
    ),
    Case("predict-threshold-1", ["predict", "{photos}", "--out", "{out}", "--threshold", "1"], 2, ("threshold",)),
    Case(
        "predict-bomb",
        ["predict", "{photos}/p0.png", "--out", "{out}", "--weights", "{model}", "--quiet"],
        1,
        ("p0.png", "GLASSGEM_MAX_PIXELS"),
        env={"GLASSGEM_MAX_PIXELS": "100"},
    ),
    Case("predict-unknown-option", ["predict", "{photos}", "--out", "{out}", "--sise", "384"], 2, ("--sise",)),
    # evaluate
    Case("evaluate-missing-data", ["evaluate", "--data", "{t}/nothing", "--weights", "{model}"], 2, ("{t}/nothing",)),
    Case("evaluate-corrupt-mask", ["evaluate", "--data", "{corrupt_data}", "--weights", "{model}"], 2, ("s1.png",)),
    Case("evaluate-size-33", ["evaluate", "--data", "{data}", "--size", "33"], 2, ("--size",)),
    Case(
        "evaluate-device-bogus",
        ["evaluate", "--data", "{data}", "--weights", "{model}", "--device", "cpu:x:y"],
        2,
        ("--device",),
    ),
    Case("evaluate-weights-nan", ["evaluate", "--data", "{data}", "--weights", "{nan_model}"], 2, ("nan_model",)),
    # evaluate-masks
    Case("evaluate-masks-missing-pred", ["evaluate-masks", "--pred", "{t}/nope", "--gt", "{gt}"], 2, ("{t}/nope",)),
    Case("evaluate-masks-size-mismatch", ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}"], 2, ("a.png",)),
    Case(
        "evaluate-masks-json-in-a-file",
        ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}", "--resize-pred", "--json", "{a_file}/m.json"],
        1,
        ("{a_file}",),
    ),
    # data check
    Case("data-check-missing", ["data", "check", "{t}/nope"], 2, ("{t}/nope",)),
    Case("data-check-symlink-loop", ["data", "check", "{loop}"], 2, ("{loop}",)),
    Case("data-check-corrupt-mask", ["data", "check", "{corrupt_data}"], 1, ("s1.png",), stream="out"),
    Case(
        "data-negatives-prefix-escapes",
        ["data", "negatives", "{data}", "--out", "{out}", "--prefix", "../../x"],
        2,
        ("--prefix",),
    ),
    # train
    *[
        Case(f"train-set-{s.split('=')[0]}", TRAIN + [s], 2, (s.split("=")[0],))
        for s in (
            "lr=-1",
            "checkpoint_period=0",
            "log_period=0",
            "num_points=0",
            "min_sizes=[]",
            "num_workers=-1",
            "mixed_precision=fp8",
            "clip_grad_norm=nan",
            "model.num_queries=0",
            "model.dec_layers=0",
            "model.image_size=33",
            "no_such_key=1",
        )
    ],
    Case(
        "train-into-an-existing-run",
        ["train", "--preset", "debug", "--data", "{data}", "--out", "{run}"],
        2,
        ("{run}", "--resume"),
    ),
    Case(
        "train-resume-nothing",
        TRAIN[:6] + ["{out}/empty", "--resume", "--set", "max_iter=2", "batch_size=2"],
        2,
        ("--resume",),
    ),
    Case(
        "train-resume-corrupt-only-checkpoint", TRAIN[:6] + ["{run}", "--resume"] + TRAIN[7:], 2, ("step_0000010.pt",)
    ),
    Case(
        "train-corrupt-data",
        ["train", "--preset", "debug", "--data", "{corrupt_data}", "--out", "{out}/r"],
        2,
        ("s1.png",),
    ),
    Case("train-full-disk", TRAIN, 1, ("No space left",), patch=_full_disk),
    # synth
    Case(
        "synth-missing-backgrounds",
        ["synth", "procedural", "--out", "{out}", "--n", "1", "--backgrounds", "{t}/nope"],
        2,
        ("{t}/nope",),
    ),
    Case("synth-size-bad", ["synth", "procedural", "--out", "{out}", "--n", "1", "--size", "10x10"], 2, ("--size",)),
    Case(
        "synth-full-disk",
        ["synth", "procedural", "--out", "{out}", "--n", "1", "--size", "64x48", "--backgrounds", "{photos}"],
        1,
        ("No space left", "{out}"),
        patch=_full_disk,
    ),
    # export
    Case(
        "export-weights-missing", ["export", "onnx", "--weights", "{t}/none", "--out", "{out}/m.onnx"], 2, ("{t}/none",)
    ),
    Case(
        "export-size-bad",
        ["export", "onnx", "--weights", "{model}", "--out", "{out}/m.onnx", "--size", "33"],
        2,
        ("size",),
    ),
    # convert
    Case("convert-missing", ["convert", "{t}/none.pth", "{out}/c"], 2, ("{t}/none.pth",)),
    Case("convert-not-original", ["convert", "{random_pth}", "{out}/c"], 2, ("{random_pth}",)),
    # average
    Case("average-missing", ["average", "{model}", "{t}/none", "--out", "{out}/avg"], 2, ("{t}/none",)),
    Case(
        "average-different-models", ["average", "{model}", "{other_model}", "--out", "{out}/avg"], 2, ("other_model",)
    ),
    Case("average-nan", ["average", "{nan_model}", "--out", "{out}/avg"], 2, ("nan_model",)),
    # bench
    Case("bench-device-bogus", ["bench", "--model", "debug", "--device", "bogus"], 2, ("--device",)),
]


PREDICT = ["predict", "{photos}", "--out", "{out}", "--weights", "{model}", "--quiet"]
SYNTH = ["synth", "procedural", "--out", "{out}", "--size", "64x48", "--backgrounds", "{photos}"]
SAFETY_CASES = [
    # 1. no input is overwritten or written into
    *[
        Case(
            f"evaluate-save-masks-into-{d or 'data'}",
            ["evaluate", "--data", "{data}", "--weights", "{model}", "--save-masks", f"{{data}}/{d}"],
            2,
            ("--save-masks", "{data}"),
        )
        for d in ("masks", "images", "")
    ],
    Case(
        "evaluate-json-onto-a-mask",
        ["evaluate", "--data", "{data}", "--weights", "{model}", "--json", "{data}/masks/s0.png"],
        2,
        ("--json", "s0.png"),
    ),
    Case(
        "evaluate-report-into-masks",
        ["evaluate", "--data", "{data}", "--weights", "{model}", "--report", "{data}/masks"],
        2,
        ("--report", "{data}/masks"),
    ),
    Case(
        "evaluate-masks-json-onto-gt",
        ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}", "--resize-pred", "--json", "{gt}/a.png"],
        2,
        ("--json", "{gt}/a.png"),
    ),
    Case(
        "evaluate-masks-report-into-pred",
        ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}", "--resize-pred", "--report", "{pred}/r"],
        2,
        ("--report", "{pred}"),
    ),
    Case(
        "data-check-json-onto-a-mask",
        ["data", "check", "{data}", "--json", "{data}/masks/s0.png"],
        2,
        ("--json", "s0.png"),
    ),
    Case(
        "visualize-out-onto-its-photo",
        ["visualize", "queries", "{photos}/p0.png", "--weights", "{model}", "--out", "{photos}/p0.png"],
        2,
        ("--out", "p0.png"),
    ),
    Case("train-out-is-the-data", TRAIN[:6] + ["{data}"] + TRAIN[7:], 2, ("--out", "{data}", "the input")),
    Case(
        "train-out-inside-init-from",
        TRAIN + ["--init-from", "{model}"] + ["--out", "{model}/run"],
        2,
        ("--out", "{model}/run"),
    ),
    Case("convert-into-its-source", ["convert", "{random_pth}", "{random_pth}"], 2, ("{random_pth}",)),
    Case("average-into-a-source", ["average", "{model}", "--out", "{model}"], 2, ("--out", "{model}")),
    # 2. nothing written outside --out
    *[
        Case(
            f"experiment-run-name-{k}",
            ["experiment", "run", f"{{plans}}/{k}.toml", "--out", "{out}"],
            2,
            (f"{k}.toml", "name"),
        )
        for k in ("escape", "absolute", "dot")
    ],
    Case(
        "predict-through-a-symlink-in-out",
        ["predict", "{nested}", "--recursive", "--out", "{out}", "--weights", "{model}", "--quiet"],
        2,
        ("--out", "outside"),
        setup=_link_out,
    ),
    # 3. a model folder's config.json is validated on load (predict; evaluate and export read it alike)
    *[
        Case(
            f"predict-config-{k}",
            ["predict", "{photos}", "--out", "{out}", "--weights", f"{{t}}/bad_config/{k}"],
            2,
            (f"bad_config/{k}/config.json", next(iter(v))),
        )
        for k, v in BAD_CONFIGS.items()
    ],
    Case(
        "evaluate-config-bad",
        ["evaluate", "--data", "{data}", "--weights", "{t}/bad_config/nheads_3"],
        2,
        ("config.json", "nheads"),
    ),
    Case(
        "export-config-bad",
        ["export", "onnx", "--weights", "{t}/bad_config/std_zero", "--out", "{out}/m.onnx"],
        2,
        ("config.json", "pixel_std"),
    ),
    *[
        Case(f"train-set-{s.split('=')[0]}", TRAIN + [s], 2, (s.split("=")[0],))
        for s in ("model.pixel_std=[0,0,0]", "model.nheads=3", "model.hidden_dim=100000", "model.dn=bogus")
    ],
    # 4. weights missing from a file are refused
    Case(
        "predict-weights-partial",
        ["predict", "{photos}", "--out", "{out}", "--weights", "{partial_model}"],
        2,
        ("partial_model", "not in it"),
    ),
    # 5. plan files
    *[
        Case(
            f"experiment-plan-{k}",
            ["experiment", "run", f"{{plans}}/{k}.toml", "--out", "{out}"],
            2,
            (f"{k}.toml", word),
        )
        for k, word in (("scale_str", "scale"), ("scale_neg", "scale"), ("latin1", "UTF-8"))
    ],
    # 6. thread and worker counts bounded by the CPUs
    Case(
        "bench-threads-huge",
        ["bench", "--model", "debug", "--size", "64", "--runs", "1", "--threads", "100000"],
        2,
        ("--threads", "100000"),
    ),
    Case(
        "evaluate-masks-workers-huge",
        ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}", "--workers", "100000"],
        2,
        ("--workers",),
    ),
    Case("synth-workers-huge", SYNTH + ["--n", "1", "--workers", "100000"], 2, ("--workers",)),
    Case(
        "experiment-budget-threads-huge",
        ["experiment", "run", "{plans}/ok.toml", "--out", "{out}", "--set", "budget.threads=100000"],
        2,
        ("budget.threads",),
    ),
    # 9. a synthesis folder is never shrunk below what it holds
    Case("synth-smaller-n", SYNTH + ["--n", "1"], 2, ("--n 1", "3 scenes"), setup=_earlier(*SYNTH, "--n", "3")),
    # 10. predict --resume keeps the photos an earlier run finished (their files untouched)
    Case(
        "predict-resume-photos",
        PREDICT + ["--resume"],
        0,
        ("wrote 0", "kept 2"),
        stream="out",
        setup=_earlier(*PREDICT),
    ),
    # 11. one process per run folder
    Case(
        "train-run-folder-locked",
        TRAIN[:6] + ["{out}/run", "--resume"] + TRAIN[7:],
        2,
        ("--out", "{out}/run", "in use", "process"),
        setup=_locked_run,
    ),
    Case(
        "experiment-folder-locked",
        ["experiment", "run", "{plans}/ok.toml", "--out", "{out}"],
        2,
        ("--out", "{out}", "in use"),
        setup=_locked,
    ),
    # 12. --resume never switches the model silently
    Case(
        "train-resume-other-preset",
        ["train", "--preset", "gem-lite", "--data", "{data}", "--out", "{run}", "--resume"],
        2,
        ("--preset gem-lite", "debug"),
    ),
    # 7. a video cut short is reported (exit 1), its frames up to there kept
    *[
        Case(
            f"predict-video-cut-{ext}",
            ["predict", f"{{t}}/cut/cut.{ext}", "--out", "{out}", "--weights", "{model}", "--quiet"],
            1,
            (f"cut.{ext}", word),
        )
        for ext, word in (("mkv", "declares 30 frames"), ("mp4", "cannot decode the video"))
    ],
    # 8. EXIF orientation of a photo beside a mask stored as drawn
    Case(
        "data-check-exif-square",
        ["data", "check", "{exif_square}"],
        0,
        ("s0.jpg", "EXIF orientation tag (6)"),
        stream="out",
    ),
    Case(
        "data-check-exif-turned",
        ["data", "check", "{exif_turned}"],
        1,
        ("s0.png", "EXIF orientation tag (6)"),
        stream="out",
    ),
    Case(
        "evaluate-exif-turned",
        ["evaluate", "--data", "{exif_turned}", "--weights", "{model}"],
        2,
        ("s0.png", "EXIF orientation"),
    ),
    # 13, 14. inputs that are not files, messages that name the file
    Case("predict-fifo-input", ["predict", "{fifo}", "--out", "{out}"], 2, ("{fifo}", "FIFO")),
    Case(
        "predict-weights-corrupt-pth",
        ["predict", "{photos}", "--out", "{out}", "--weights", "{corrupt_pth}"],
        2,
        ("{corrupt_pth}",),
        absent=("weights_only", "add_safe_globals"),
    ),
    Case(
        "evaluate-json-full-disk",
        ["evaluate", "--data", "{data}", "--weights", "{model}", "--json", "{out}/m.json"],
        1,
        ("{out}/m.json", "No space left"),
        patch=_no_fsync_space,
    ),
    Case(
        "evaluate-masks-json-is-a-folder",
        ["evaluate-masks", "--pred", "{pred}", "--gt", "{gt}", "--resize-pred", "--json", "{out}"],
        2,
        ("--json", "{out}", "folder"),
        setup=_folder,
    ),
    Case(
        "export-out-is-a-folder",
        ["export", "onnx", "--weights", "{model}", "--out", "{out}"],
        2,
        ("--out", "{out}", "folder"),
        setup=_folder,
    ),
    Case("predict-out-read-only", PREDICT, 2, ("--out", "{out}", "Permission denied"), patch=_read_only_out),
    Case(
        "predict-overlay-beyond-jpeg",
        ["predict", "{wide}", "--out", "{out}", "--weights", "{model}", "--quiet", "--overlay"],
        1,
        ("wide_overlay.jpg", "JPEG", "65535"),
    ),
]
CASES += SAFETY_CASES


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    fmt = {k: str(v) for k, v in world.items()} | {"out": str(out)}
    argv = [a.format(**fmt) for a in case.argv]
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.patch:
        case.patch(monkeypatch)
    before = _snapshot(world["t"])
    with case.setup(out, world) if case.setup else contextlib.nullcontext():
        capsys.readouterr()
        earlier = _snapshot(tmp_path)
        code = main(argv)
        later = _snapshot(tmp_path)
    captured = capsys.readouterr()
    text = captured.err if case.stream == "err" else captured.out
    assert "Traceback" not in captured.err + captured.out, captured.err
    assert code == case.code, (code, captured.err, captured.out)
    names = [n.format(**fmt) for n in case.names]
    lines = [line for line in text.splitlines() if all(n in line for n in names)]
    assert lines, f"no line naming {names}:\n{text}"
    if case.stream == "err" and code == 2:
        errors = [line for line in captured.err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors == lines[:1], captured.err  # one line, and it is the one naming it
    assert _snapshot(world["t"]) == before  # no input or earlier result changed, nothing added there
    if code == 2 or case.id == "predict-resume-photos":  # refused (or nothing left to do): nothing written
        assert later == earlier, sorted(set(later) ^ set(earlier))
    assert not [w for w in case.absent if w in captured.err + captured.out], captured.err
    escaped = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and out not in p.parents]
    assert not escaped  # nothing written beside --out
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_python_api_refuses_bad_input_by_name(world, tmp_path):
    """The library's own entry points: a bad size, an unreadable PIL image, a folder, a bad config, a partial
    weights file (strict by default; strict=False loads it with a warning)."""
    from glassgem import GEM
    from glassgem.config import ModelConfig
    from glassgem.errors import CheckpointError, ConfigError, DataError

    model = GEM.from_pretrained(world["model"])
    photo = np.full((40, 48, 3), 100, np.uint8)
    for size in (0, -32, 100, "384", True):
        with pytest.raises(ConfigError, match="size=.*test size"):
            model.predict(photo, size=size)
    closed = Image.open(world["photos"] / "p0.png")
    closed.close()
    truncated_path = tmp_path / "cut.png"
    truncated_path.write_bytes((world["photos"] / "p0.png").read_bytes()[:60])
    for image, name in ((closed, "p0.png"), (Image.open(truncated_path), "cut.png")):
        with pytest.raises(DataError, match=f"{name}.*cannot read"):
            model.predict(image)
    with pytest.raises(DataError, match="a folder, not an image file"):
        model.predict(str(world["photos"]))
    with pytest.raises(CheckpointError, match=r"nheads_3/config.json.*multiple of nheads=3"):
        GEM.from_pretrained(world["t"] / "bad_config" / "nheads_3")
    with pytest.raises(Exception, match="pixel_std"):
        GEM(ModelConfig(name="debug", encoder="debug", pixel_std=(0.0, 0.0, 0.0)))
    with pytest.raises(CheckpointError, match="partial_model.*not in it"):
        GEM.from_pretrained(world["partial_model"])
    with pytest.warns(UserWarning, match="missing keys"):
        GEM.from_pretrained(world["partial_model"], strict=False)
