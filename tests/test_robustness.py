"""Issue 20's defects D1-D16 and first-time-user points, one test (or two) each; every one failed before the fix.

Training runs use the debug preset on 4 tiny generated images, in-process, one thread."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glassgem.cli import main

torch.set_num_threads(1)


def make_dataset(root: Path, n: int = 4, size: int = 96, mask_values=(0, 255)) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        mask = np.full((size, size), mask_values[0], np.uint8)
        for j, v in enumerate(mask_values[1:]):
            mask[8 + 16 * j : 24 + 16 * j, 8:60] = v
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


TRAIN_SET = [
    "max_iter=4",
    "checkpoint_period=1",
    "log_period=1",
    "batch_size=2",
    "num_points=64",
    "min_sizes=[96]",
    "crop_size=96",
    "keep_last=3",
    "eval_period=1000",
]


def train(data: Path, run: Path, *extra: str, steps: int | None = None) -> int:
    argv = ["train", "--preset", "debug", "--data", str(data), "--out", str(run), "--set", *TRAIN_SET, *extra]
    return main(argv + (["--max-steps", str(steps)] if steps else []))


def one_line_error(capsys, code: int, expected: int = 2, *names: str) -> str:
    err = capsys.readouterr().err
    assert code == expected, err
    lines = [line for line in err.splitlines() if line.startswith("glassgem: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("d") / "data")


# ------------------------------------------------------------------------------------ D1 log.csv
def test_d1_a_kill_while_the_log_is_trimmed_leaves_the_old_log(tmp_path, monkeypatch):
    from glassgem.train import runlog

    log = tmp_path / "log.csv"
    log.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n")
    real = csv.DictWriter.writerows

    def killed(self, rows):  # the process dies while the kept rows are being written
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        runlog._truncate_after(log, 2)
    monkeypatch.setattr(csv.DictWriter, "writerows", real)
    assert log.read_text() == "step,loss\n1,0.5\n2,0.4\n3,0.3\n"
    runlog._truncate_after(log, 2)
    assert log.read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4"]


def test_d1_an_empty_log_gets_its_header_back(tmp_path):
    from glassgem.train.runlog import RunLogger

    (tmp_path / "log.csv").write_text("")  # what a kill between open("w") and the first row left
    logger = RunLogger(tmp_path, resume_step=0)
    logger.log_train(1, 0.5, {}, 1e-3, 1.0, 2.0)
    logger.close()
    rows = list(csv.DictReader(open(tmp_path / "log.csv", newline="")))
    assert rows[0]["step"] == "1" and float(rows[0]["loss"]) == 0.5


# ------------------------------------------------------------------------ D2, D14, D13, D8 runs
@pytest.mark.slow
def test_d2_train_into_an_existing_run_without_resume_is_refused(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert train(data, run, steps=1) == 0
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    one_line_error(capsys, train(data, run, steps=1), 2, str(run), "--resume")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_d14_resume_without_a_checkpoint_is_an_error(tmp_path, data, capsys):
    code = main(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "empty"),
            "--resume",
            "--set",
            *TRAIN_SET,
            "--max-steps",
            "1",
        ]
    )
    one_line_error(capsys, code, 2, "--resume", "checkpoint")
    assert not (tmp_path / "empty" / "checkpoints").exists() or not any((tmp_path / "empty" / "checkpoints").iterdir())


def test_d14_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert train(data, run, steps=2) == 0
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_0000001.pt", "step_0000002.pt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])  # damaged
    capsys.readouterr()
    assert train(data, run, "--resume", steps=2) == 0
    out = capsys.readouterr()
    assert "step_0000002.pt" in out.err and "before it" in out.err
    assert "stopped at step 3/4" in out.out
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "log.csv", newline=""))]
    assert steps == [1, 2, 3]  # nothing lost, nothing doubled


def test_d13_orphan_temporary_files_are_removed_on_resume(tmp_path, data):
    run = tmp_path / "run"
    assert train(data, run, steps=1) == 0
    orphan = run / "checkpoints" / ".step_0000002.pt.k1ll3d.tmp"
    orphan.write_bytes(b"x" * 100)
    log_orphan = run / ".log.csv.ab12cd.tmp"
    log_orphan.write_text("step\n")
    assert train(data, run, "--resume", steps=1) == 0
    assert not orphan.exists() and not log_orphan.exists()


def test_d8_resume_with_another_architecture_names_the_difference(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert train(data, run, steps=1) == 0
    (run / "config.json").unlink()  # so the preset's settings (plus --set) apply, not the run's own
    line = one_line_error(capsys, train(data, run, "model.dec_layers=3", "--resume", steps=1), 2)
    assert "dec_layers" in line and "step_0000001.pt" in line


# ------------------------------------------------------------------------------ D3 full disk
FULL_DISK = r"""
import io, resource, signal, sys
import numpy as np
from PIL import Image
from glassgem.io import save_image
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC on a full disk
arr = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
buf = io.BytesIO(); Image.fromarray(arr).save(buf, format="JPEG", quality=90)
full = len(buf.getvalue())
resource.setrlimit(resource.RLIMIT_FSIZE, (full - 4000, full - 4000))  # the last chunk gets a short write
try:
    save_image(sys.argv[1], arr, quality=90)
    print("written", full)
except OSError as e:
    print("refused", e.errno)
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="RLIMIT_FSIZE: Linux")
def test_d3_a_full_disk_never_publishes_a_truncated_jpeg(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "photo.jpg"
    import glassgem

    env = dict(os.environ, PYTHONPATH=str(Path(glassgem.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("written"):  # then it must be whole
        assert target.stat().st_size == int(out.stdout.split()[1])
    else:
        assert out.stdout.startswith("refused") and not target.exists()
        assert not [p for p in tmp_path.iterdir()]  # no temporary file left either


# --------------------------------------------------------------------------- predict: D4, D5, D6
def _photos(folder: Path, n: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"p{i}.png")
        Image.fromarray(np.full((40, 48, 3), 90 + i, np.uint8)).save(paths[-1])
    return paths


def test_d4_an_input_named_inside_out_is_refused_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    (photo,) = _photos(out, 1)
    before = photo.read_bytes()
    one_line_error(capsys, main(["predict", str(photo), "--out", str(out), "--quiet"]), 2, str(photo), "--out")
    assert photo.read_bytes() == before and [p.name for p in out.iterdir()] == ["p0.png"]


@pytest.mark.parametrize("where", ["same", "above"])
def test_d5_out_equal_to_or_above_the_input_folder_is_an_error_not_zero_masks(tmp_path, capsys, where):
    photos = tmp_path / "photos"
    _photos(photos)
    out = photos if where == "same" else tmp_path
    one_line_error(capsys, main(["predict", str(photos), "--out", str(out), "--quiet"]), 2, "--out", str(photos))
    assert sorted(p.name for p in photos.iterdir()) == ["p0.png", "p1.png"]


def test_d6_symlink_loops_are_one_line_errors(tmp_path, capsys):
    photos = tmp_path / "photos"
    _photos(photos)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    one_line_error(capsys, main(["predict", str(photos), "--out", str(loop), "--quiet"]), 2, str(loop))
    one_line_error(capsys, main(["predict", str(loop), "--out", str(tmp_path / "o"), "--quiet"]), 2, str(loop))
    one_line_error(capsys, main(["data", "check", str(loop)]), 2, str(loop))


# ----------------------------------------------------------------------------- D7 file names
@pytest.mark.skipif(os.name == "nt", reason="non-UTF-8 names are a POSIX thing")
def test_d7_non_utf8_file_names_do_not_crash_the_report(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    name = os.fsdecode(b"\xff\xfeglass.png")
    for folder in (pred, gt):
        folder.mkdir()
        m = np.zeros((32, 32), np.uint8)
        m[4:20, 4:20] = 255
        Image.fromarray(m).save(folder / name)
        Image.fromarray(m).save(folder / "plain.png")
    code = main(["evaluate-masks", "--pred", str(pred), "--gt", str(gt), "--report", str(tmp_path / "rep")])
    assert code == 0, capsys.readouterr().err
    text = (tmp_path / "rep" / "per_image.csv").read_bytes().decode("utf-8")  # valid UTF-8
    assert "\\udcff\\udcfeglass" in text and "plain" in text


# ------------------------------------------------------------------------------- D11 warnings
def test_d11_train_shows_data_checks_warnings(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", mask_values=(0, 1, 2, 128))
    code = train(data, tmp_path / "run", steps=1)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" in err and "non-binary mask values" in err and "s0.png" in err


# --------------------------------------------------------------------------- first-time user
@pytest.mark.slow
def test_bench_without_options_times_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--size", "128", "--runs", "1", "--threads", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    from glassgem.hub.pretrained import DEFAULT_WEIGHTS

    shipped = json.loads((DEFAULT_WEIGHTS / "config.json").read_text())
    assert r["model"] == shipped.get("name", "gem-lite") != "gem-tiny"


def test_the_decompression_bomb_limit_can_be_raised_as_the_message_says(tmp_path, monkeypatch):
    from glassgem.errors import DataError
    from glassgem.io import load_image

    path = _photos(tmp_path, 1)[0]  # 48x40 = 1920 pixels
    monkeypatch.setenv("GLASSGEM_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="GLASSGEM_MAX_PIXELS=1920"):
        load_image(path)
    monkeypatch.setenv("GLASSGEM_MAX_PIXELS", "1920")
    assert load_image(path).shape == (40, 48, 3)


def test_d2_a_run_killed_before_its_first_checkpoint_can_start_over(tmp_path, data):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "log.csv").write_text("step,loss\n1,0.9\n2,0.8\n")  # rows of the attempt that died
    assert train(data, run, steps=1) == 0
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "log.csv", newline=""))]
    assert steps == [1]


def test_d13_predict_removes_old_orphan_temporary_files_in_out(tmp_path, capsys):
    import time

    from glassgem.inference.files import collect_inputs
    from glassgem.inference.predict import predict_files

    class Scorer:
        input_size = 64

        def __call__(self, images):
            return torch.zeros(images.shape[0], 2, 64, 64)

    out = tmp_path / "out"
    out.mkdir()
    old, fresh = out / ".p0.png.abc123.tmp", out / ".p1.png.def456.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    predict_files(collect_inputs([str(p) for p in _photos(tmp_path / "photos")]), out, Scorer(), progress=False)
    assert not old.exists() and fresh.exists()  # a fresh one may belong to a process writing there now
