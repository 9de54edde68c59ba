"""End-to-end photos/s of `glassgem predict` on a folder and of glassgem.Predictor in a library script on the same
photos: idle, beside a second `glassgem predict`, and beside N busy processes, next to the model-only rate. Prints
one table (Markdown) and the machine's load.

    python benchmarks/bench_predict.py --photos ../shared/data/gdd-dev/val/images --n 40
    python benchmarks/bench_predict.py --src /path/to/other/checkout/src   # the same script on another tree

It copies the first --n photos of --photos to a temporary folder, then for each condition runs
`python -m glassgem.cli predict TMP --out OUT --quiet` --repeats times and reports the median of predict's
own photos/s (its summary line: the loop, model load excluded) and of the whole process (wall clock); then
--repeats times a library script (API_SCRIPT: `Predictor(weights).predict(paths)`, the same photos as one list,
model load excluded, masks kept in memory) in a fresh process, and reports its photos/s and per-photo time beside
predict's (the API column: API ms per photo / predict's ms per photo; 1.00 = the command's speed).
The neighbours are started here and stopped (killed with their process group) before the next condition:
  predict: a loop of `glassgem predict` on the same photos, started ~--settle s before the timed run;
  busy N:  N processes spinning a pure-Python loop.
Model-only: `semantic_scores` of the same model on random 384x384 batches of 4 in a fresh process, idle.
No timing thresholds: it prints numbers, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE = re.compile(r"wrote (\d+) mask\(s\).* in ([\d.]+) s \(([\d.]+) images/s\)")

MODEL_ONLY = r"""
import time, torch
try:
    from glassgem.inference.scorers import ModelScorer, load_model_for_inference
except ImportError:  # a --src tree from before the issue-22 layout
    from glassgem.evaluate import load_model_for_inference
    from glassgem.predict import ModelScorer
model, dev, dt = load_model_for_inference({weights!r}, 'cpu')
s = ModelScorer(model, dev, dt)
x = torch.rand(4, 3, s.input_size, s.input_size) * 255
torch.set_flush_denormal(True)
for _ in range(2): s(x)
n, t = 0, time.perf_counter()
while time.perf_counter() - t < {seconds}:
    s(x); n += 4
print('RATE', n / (time.perf_counter() - t), torch.get_num_threads())
"""


API_SCRIPT = r"""
import sys, time
from pathlib import Path
from glassgem import Predictor  # first, as a library user would: the thread policy precedes torch
files = sorted(p for p in Path({photos!r}).iterdir())
predictor = Predictor({weights!r}, batch_size={batch_size}, precision={precision!r})
t = time.perf_counter()
masks = predictor.predict(files)
seconds = time.perf_counter() - t
assert len(masks) == len(files)
print('RATE', len(files) / seconds)
"""


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve()) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _predict_cmd(photos: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "glassgem.cli", "predict", str(photos), "--out", str(out), "--quiet", *extra]


def _predict_process(photos: Path, out: Path, env: dict, extra: list[str]) -> tuple[str, float]:
    """One whole `glassgem predict` process into a fresh `out`: (its stdout, wall seconds); exits on failure."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.run(_predict_cmd(photos, out, extra), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"bench_predict: predict failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout, wall


def run_predict(photos: Path, out: Path, env: dict, extra: list[str]) -> tuple[float, float]:
    """-> (predict's own photos/s, photos / wall seconds of the whole process)."""
    stdout, wall = _predict_process(photos, out, env, extra)
    m = RATE.search(stdout)
    if not m:
        sys.exit(f"bench_predict: predict printed no rate: {stdout.strip()[-500:]}")
    return float(m.group(3)), int(m.group(1)) / wall


def startup_seconds(photo: Path, out: Path, env: dict, extra: list[str], repeats: int) -> float:
    """Median wall seconds of a whole `glassgem predict ONE_PHOTO` process (a warm run first fills the caches)."""
    _predict_process(photo, out, env, extra)
    return statistics.median(_predict_process(photo, out, env, extra)[1] for _ in range(repeats))


def matmul_yardstick(env: dict) -> str:
    """The fp32 2048² matmul rate of a fresh process with glassgem's thread policy (GFLOP/s)."""
    code = "import glassgem.inference.bench as b; print(round(b.matmul_gflops()[0]))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def run_api(photos: Path, env: dict, weights: str | None, batch_size: int, precision: str = "auto") -> float:
    """Photos/s of glassgem.Predictor on the photos in a fresh library process (model load excluded)."""
    code = API_SCRIPT.format(photos=str(photos), weights=weights, batch_size=batch_size, precision=precision)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    m = re.search(r"RATE ([\d.]+)", proc.stdout)
    if proc.returncode != 0 or not m:
        sys.exit(f"bench_predict: the API script failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return float(m.group(1))


def _option(extra: list[str], name: str, default: str | None) -> str | None:
    """The value of `name` in the predict options, so the API script runs the same model and batch size."""
    return extra[extra.index(name) + 1] if name in extra[:-1] else default


def start_neighbours(kind: str, n: int, photos: Path, tmp: Path, env: dict, extra: list[str]) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        if kind == "predict":
            cmd = " ".join(f"'{c}'" for c in _predict_cmd(photos, tmp / f"neighbour_{i}", extra))
            args = ["bash", "-c", f"while true; do {cmd} >/dev/null 2>&1; done"]
        else:
            args = [sys.executable, "-c", "while True: pass"]
        procs.append(
            subprocess.Popen(
                args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    return procs


def stop_neighbours(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def model_only(env: dict, seconds: float, weights: str | None) -> tuple[float, int]:
    """The model's own photos/s, warm, of the weights predict is given (`--weights` in --predict-args)."""
    proc = subprocess.run(
        [sys.executable, "-c", MODEL_ONLY.format(seconds=seconds, weights=weights)],
        env=env,
        capture_output=True,
        text=True,
    )
    m = re.search(r"RATE ([\d.]+) (\d+)", proc.stdout)
    if not m:
        sys.exit(f"bench_predict: model-only timing failed: {proc.stderr.strip()[-500:]}")
    return float(m.group(1)), int(m.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--photos",
        default=str(Path(__file__).resolve().parents[2] / "shared/data/gdd-dev/val/images"),
        help="folder of photos (default ../shared/data/gdd-dev/val/images)",
    )
    ap.add_argument("--n", type=int, default=40, help="photos per run (default 40)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per condition, median reported (default 3)")
    ap.add_argument("--busy", type=int, nargs="*", default=[2], help="busy-loop neighbour counts (default 2)")
    ap.add_argument("--settle", type=float, default=6.0, help="seconds a neighbour runs before timing (default 6)")
    ap.add_argument(
        "--model-seconds", type=float, default=8.0, help="how long the model-only rate is timed (default 8)"
    )
    ap.add_argument("--src", default=None, help="put this src folder first on PYTHONPATH (another checkout)")
    ap.add_argument("--predict-args", default="", help="extra predict options, e.g. '--batch-size 1'")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the neighbours (finally)
    env, extra = _env(args.src), args.predict_args.split()
    files = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    if len(files) < args.n:
        sys.exit(f"bench_predict: {args.photos}: only {len(files)} photos, --n {args.n}")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as t:
        tmp = Path(t)
        photos = tmp / "photos"
        photos.mkdir()
        for f in files:
            shutil.copy(f, photos / f.name)
        load0 = os.getloadavg()[0]
        print(
            f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable); load average at start "
            f"{load0:.2f}; python {sys.version.split()[0]}; {args.n} photos x {args.repeats} runs; "
            f"src {args.src or 'installed glassgem'}; predict args '{args.predict_args}'",
            flush=True,
        )
        onnx = _option(extra, "--onnx", None)
        weights = onnx or _option(extra, "--weights", None)
        precision = _option(extra, "--precision", "auto") or "auto"  # as glassgem predict
        batch_size = int(_option(extra, "--batch-size", "4") or 4)
        if not onnx:
            mo, threads = model_only(env, args.model_seconds, weights)
            print(f"model only (PyTorch fp32, batch 4, 384², {threads} threads, idle): {mo:.1f} photos/s")
        print(f"fp32 2048² matmul yardstick: {matmul_yardstick(env)} GFLOP/s")
        start = startup_seconds(photos / files[0].name, tmp / "one", env, extra, args.repeats)
        print(f"start-up: whole-process `glassgem predict ONE_PHOTO`, warm caches: {start:.2f} s (median)\n")
        print(
            "| condition | predict photos/s (its own figure) | whole process photos/s | of idle | runs "
            "| API photos/s (library script) | API ms/photo vs predict's | load |"
        )
        print("|---|---|---|---|---|---|---|---|", flush=True)
        conditions = [("idle", None, 0), ("beside 1 predict", "predict", 1)] + [
            (f"beside {k} busy loop(s)", "busy", k) for k in args.busy
        ]
        idle = None
        for label, kind, k in conditions:
            procs = start_neighbours(kind, k, photos, tmp, env, extra) if kind else []
            try:
                if procs:
                    time.sleep(args.settle)
                runs = [run_predict(photos, tmp / "out", env, extra) for _ in range(args.repeats)]
                api_runs = [run_api(photos, env, weights, batch_size, precision) for _ in range(args.repeats)]
            finally:
                stop_neighbours(procs)
            own = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            api = statistics.median(api_runs)
            idle = idle or own
            print(
                f"| {label} | {own:.1f} | {wall:.1f} | {own / idle:.2f} | "
                f"{' '.join(f'{r[0]:.1f}' for r in runs)} | {api:.1f} ({' '.join(f'{r:.1f}' for r in api_runs)}) | "
                f"{1000 / api:.0f} vs {1000 / own:.0f} ms ({own / api:.2f}) | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
