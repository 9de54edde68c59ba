"""Encoder speed on CPU: median / min ms per forward (batch 1, eval, inference mode) and GFLOPs.

    .venv/bin/python benchmarks/bench_encoders.py                      # tinyvit at 384², fp32, 2 threads
    .venv/bin/python benchmarks/bench_encoders.py --encoders tinyvit sam_vit_b efficientnet_lite0 \
        --sizes 384 512 --dtype bf16 --runs 20

Numbers are only comparable on an otherwise idle machine: the load average and the speed of a 2048²
fp32 matmul (about 204 GFLOP/s on an idle 2-core EPYC box, ../reference/README.md) are printed with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from glassgem.config import model_preset
from glassgem.model.encoders import build_encoder

PRESET = {"tinyvit": "gem-tiny", "sam_vit_b": "gem-base", "efficientnet_lite0": "gem-lite", "debug": "debug"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _time_ms(fn, warmup: int, runs: int, clock=time.perf_counter) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = clock()
        fn()
        out.append((clock() - t) * 1e3)
    return out


def matmul_gflops(warmup: int = 2, runs: int = 5) -> float:
    a = torch.randn(2048, 2048)
    ms = statistics.median(_time_ms(lambda: a @ a, warmup, runs))
    return 2 * 2048**3 / ms / 1e6


def bench(encoder: str, size: int, dtype: str, warmup: int, runs: int) -> str:
    cfg = dataclasses.replace(model_preset(PRESET[encoder]), encoder=encoder)
    model = build_encoder(cfg).eval()
    x = torch.randn(1, 3, size, size)
    autocast = DTYPES[dtype]

    def forward() -> None:
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None),
        ):
            model(x)

    with FlopCounterMode(display=False) as counter:
        forward()
    gflops = counter.get_total_flops() / 1e9
    ms = _time_ms(forward, warmup, runs)
    # CPU time of the whole process: with --threads 1 on a busy machine it leaves out the time the
    # process waited for a core, so it is the steadier number there.
    cpu = statistics.median(_time_ms(forward, 0, runs, clock=time.process_time))
    med = statistics.median(ms)
    return (
        f"{encoder:18s} {size:5d}² {dtype:5s}  median {med:8.1f} ms  min {min(ms):8.1f} ms  "
        f"cpu {cpu:8.1f} ms  {gflops:6.2f} GFLOPs  {gflops / med * 1e3:6.1f} GFLOP/s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", nargs="+", default=["tinyvit"], choices=sorted(PRESET))
    p.add_argument("--sizes", nargs="+", type=int, default=[384])
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, load average before: "
        f"{os.getloadavg()[0]:.2f}, 2048² matmul {matmul_gflops():.0f} GFLOP/s"
    )
    for enc in args.encoders:
        for size in args.sizes:
            print(bench(enc, size, args.dtype, args.warmup, args.runs), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}, 2048² matmul {matmul_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
