"""How fast `glassgem synth procedural` makes scenes on this machine.

    .venv/bin/python benchmarks/bench_procedural.py [--n 200] [--workers 2] [--size 512x384]

Prints the wall-clock rate of a full synthesize() run (workers, JPEG/PNG encoding, atomic writes,
manifest included) into a temporary folder, then the single-process CPU cost per scene of
generate_scene() alone, with the machine's load average so shared-machine numbers can be judged.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from glassgem.synth.procedural.backgrounds import default_backgrounds
from glassgem.synth.procedural.pipeline import synthesize
from glassgem.synth.procedural.render import generate_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        summary = synthesize(
            os.path.join(tmp, "set"), n=args.n, seed=args.seed, workers=args.workers, size=size, progress=False
        )
    print(
        f"synthesize: {args.n} scenes {size[0]}x{size[1]}, {args.workers} worker(s): "
        f"{summary['seconds']:.1f} s -> {summary['scenes_per_second']:.2f} scenes/s (wall clock), "
        f"{summary['no_glass']} without glass, mean glass fraction {summary['mean_glass_fraction']:.3f}"
    )

    bgs = default_backgrounds()
    for i in range(len(bgs)):
        bgs.image(i)  # decode once, as each worker does
    k = min(40, args.n)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(k):
        generate_scene(np.random.default_rng([args.seed, i]), bgs, size)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(
        f"generate_scene alone, 1 process: {1000 * cpu / k:.0f} ms CPU / scene "
        f"({k / cpu:.1f} scenes/s per core), {1000 * wall / k:.0f} ms wall / scene"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
