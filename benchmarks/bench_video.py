"""How fast `glassgem predict` segments a video on this machine (needs glassgem[video]).

    .venv/bin/python benchmarks/bench_video.py [--frames 150] [--size 640x480] [--weights DIR] [--precision P]

Writes a synthetic H.264 clip (a camera panning across a procedural glass scene, 30 fps) into a temporary
folder, then times `glassgem predict CLIP --out DIR` twice, without and with `--overlay` (the overlay video),
through the same code as the command (the default model and precision unless --weights, --precision).
Prints frames/s for each, with the machine's load average and the same-process fp32 matmul speed, so numbers
from a shared machine can be judged.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def write_pan(path: Path, frames: int, width: int, height: int) -> None:
    import av

    from glassgem.synth.procedural.backgrounds import default_backgrounds
    from glassgem.synth.procedural.render import generate_scene

    scene, _, _ = generate_scene(np.random.default_rng([7, 1]), default_backgrounds(), (width * 3 // 2, height))
    step = max(1, (scene.shape[1] - width) // max(1, frames - 1))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x = min(i * step, scene.shape[1] - width)
            for p in s.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, x : x + width]), format="rgb24")
            ):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="640x480", help="WxH of the clip")
    ap.add_argument("--weights", default=None, help="model dir or shipped name (default: GEM-S)")
    ap.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "int8"), help="as glassgem predict (default auto)"
    )
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    from glassgem.inference.bench import matmul_gflops
    from glassgem.inference.files import Photo
    from glassgem.inference.predict import predict_files
    from glassgem.inference.predictor import Predictor

    print(
        f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}, "
        f"fp32 2048² matmul {matmul_gflops()[0]:.0f} GFLOP/s; precision {args.precision}"
    )
    scorer = Predictor(args.weights, precision=args.precision)  # as glassgem predict makes it
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        write_pan(clip, args.frames, width, height)
        for overlay in (False, True):
            start = time.perf_counter()
            s = predict_files(
                [Photo(clip, "pan")], Path(tmp) / f"out{int(overlay)}", scorer, overlay=overlay, progress=False
            )
            seconds = time.perf_counter() - start
            assert not s.failed and s.videos[0].frames == args.frames, s.line()
            print(
                f"{args.frames} frames {width}x{height}{' + overlay video' if overlay else ''}: {seconds:.1f} s "
                f"-> {args.frames / seconds:.2f} frames/s"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
