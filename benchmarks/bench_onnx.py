"""onnxruntime (CPU) vs PyTorch latency of the whole GEM inference (`GEM.semantic_scores`, images -> scores).

    .venv/bin/python benchmarks/bench_onnx.py                          # gem-tiny, random weights, 384², 2 threads
    .venv/bin/python benchmarks/bench_onnx.py --no-optimize            # export without the op-fusion pass
    .venv/bin/python benchmarks/bench_onnx.py --onnx a.onnx b.onnx     # time existing exports instead
    .venv/bin/python benchmarks/bench_onnx.py --no-spin                # on a busy machine (see below)

fp32, batch 1. Both runtimes get the same number of threads. Each runner is timed in a block of its own
(warm-up, then runs), in the order A B .. then .. B A, so that a change in the machine's load hits all of
them alike. (Alternating single calls would not be fair: onnxruntime's and OpenMP's worker threads keep
spinning for a while after a call and take the cores from the other runtime.)

The load average is printed before and after: numbers are only comparable on an otherwise idle machine.
On a busy machine spin-waiting worker threads wait for each other at every barrier while the OS runs
someone else: measured at load ~4 on 2 cores, GEM-Tiny with PyTorch took 6.9 s instead of 0.42 s and
onnxruntime 0.72 s instead of 0.45 s. `--no-spin` lets idle workers sleep in both (OMP_WAIT_POLICY=PASSIVE,
onnxruntime's session.intra_op.allow_spinning=0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gem-tiny", help="preset with random weights (default gem-tiny)")
    p.add_argument("--weights", default=None, help="glassgem dir or original checkpoint instead of random weights")
    p.add_argument("--onnx", nargs="+", default=None, metavar="FILE", help="time these exports (same model)")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--no-optimize", action="store_true", help="export without the onnxscript op-fusion pass")
    p.add_argument("--no-spin", action="store_true", help="idle worker threads sleep (for a busy machine)")
    return p.parse_args()


def main() -> None:
    args = _args()
    if args.no_spin and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        # OpenMP reads its wait policy once, when torch loads it: start again with it set
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    import onnxruntime
    import torch

    from glassgem import GEM
    from glassgem.inference.export import export_onnx, load_onnx_scorer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GEM.from_pretrained(args.weights) if args.weights else GEM.from_config(args.model).eval()
    files = [Path(f) for f in args.onnx or []]
    tmp = tempfile.TemporaryDirectory()
    if not files:
        files = [Path(tmp.name) / f"{model.cfg.name}.onnx"]
        report = export_onnx(model, files[0], size=args.size, optimize=not args.no_optimize)
        print(report.line())
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, "
        f"{model.cfg.name} {args.size}² fp32 batch 1, spinning {'off' if args.no_spin else 'on'}, "
        f"load average before: {os.getloadavg()}"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1) - args.threads and not args.no_spin:
        print(
            "warning: the machine is busy; spin-waiting threads can make both runtimes several times "
            "slower than on an idle machine (try --no-spin)"
        )
    x = torch.rand(1, 3, args.size, args.size) * 255
    scorers = {f.name: load_onnx_scorer(f, threads=args.threads, spinning=not args.no_spin) for f in files}
    with torch.inference_mode():
        ref = model.semantic_scores(x)
        runners = {"pytorch": lambda: model.semantic_scores(x)}
        runners.update({f"onnxruntime {name}": (lambda s=s: s(x)) for name, s in scorers.items()})
        for name, s in scorers.items():
            print(f"{name}: max abs diff vs PyTorch {(s(x) - ref).abs().max().item():.2e}")
        times: dict[str, list[float]] = {k: [] for k in runners}
        for half in range(2):  # A B .. B A: a load change halfway through hits every runner alike
            for k in list(runners) if half == 0 else list(runners)[::-1]:
                for _ in range(args.warmup):
                    runners[k]()
                times[k] += [_ms(runners[k]) for _ in range((args.runs + 1) // 2)]
    base = statistics.median(times["pytorch"])
    for k, ms in times.items():
        med = statistics.median(ms)
        print(f"{k:40s} median {med:7.1f} ms  min {min(ms):7.1f} ms  ({base / med:4.2f}x PyTorch's speed)")
    print(f"load average after: {os.getloadavg()}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
