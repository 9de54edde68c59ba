"""Inference speed of a GEM model: latency percentiles, FLOPs, and how close to the machine's matmul peak.

`glassgem bench` measures `GEM.semantic_scores` (the whole inference: normalisation, encoder, head,
mask upsampling and the class-weighted sum) on random input, after warm-up, in the same process as a
2048² matmul that calibrates what this machine can do at the chosen dtype.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..errors import ConfigError
from ..hub.pretrained import from_pretrained
from ..io import atomic_write_text
from ..model.gem import GEM
from .export import export_onnx
from .onnx_runner import load_onnx_scorer
from .runtime import DTYPES, autocast, fuse_for_inference, resolve_dtype
from .scorers import ModelScorer
from .threads import cpu_cores


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_matmul(n: int, dtype: str, runs: int, device: str) -> float:
    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    a @ b  # warm-up (thread pool, packing buffers)
    best = float("inf")
    for _ in range(runs):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def matmul_gflops(
    dtype: str = "fp32", n: int = 2048, runs: int = 5, device: str = "cpu", max_seconds: float = 5.0
) -> tuple[float, int]:
    """Achieved GFLOP/s of an n×n @ n×n matmul (best of `runs`), the yardstick for model efficiency.

    -> (GFLOP/s, n used). On hardware without a fast kernel for `dtype` (bf16 on CPUs without
    AVX512-BF16/AMX runs ~100x slower than fp32) n is reduced so one product takes <= max_seconds.
    """
    probe = _time_matmul(256, dtype, 1, device)
    while n > 256 and 2 * n**3 / (probe * 1e9) > max_seconds:
        n //= 2
    return _time_matmul(n, dtype, runs, device), n


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on Windows
        return None


def native_bf16() -> bool:
    """Whether this CPU has native bf16 matmul support (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class SemanticScorer(Protocol):
    """What count_flops measures: a GEM, or any module with its `semantic_scores`."""

    def semantic_scores(self, images: torch.Tensor) -> torch.Tensor: ...


def count_flops(model: SemanticScorer, images: torch.Tensor, dtype: str = "fp32") -> int:
    """FLOPs (2·MAC) of one `semantic_scores` call as torch's FlopCounterMode counts them
    (matmuls, convolutions, attention; element-wise work and gathers are not counted). Counted on the
    eager model: a TorchScript graph's pre-packed oneDNN ops are invisible to the counter."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), autocast(images.device, dtype), counter:
        model.semantic_scores(images)
    return int(counter.get_total_flops())


RUNTIMES = ("torch", "onnxruntime")


def benchmark(
    model: str | None = None,
    weights: str | None = None,
    size: int = 384,
    threads: int | None = None,
    dtype: str = "fp32",
    batch: int = 1,
    runs: int = 10,
    warmup: int = 3,
    device: str = "cpu",
    runtime: str = "torch",
    onnx: str | None = None,
    eager: bool = False,
) -> dict[str, Any]:
    """Time `runs` calls after `warmup` calls; returns latencies (ms), FLOPs and efficiency figures.
    The model: `weights` if given, else a random-weight `model` preset if given, else the shipped model.

    runtime "torch" times the CLI's inference path (the scorer of a model fused for inference: a TorchScript
    graph where that is faster, inference/graphs.py); `eager` times plain eager PyTorch instead.
    runtime "onnxruntime" times the exported graph (glassgem export onnx) on onnxruntime's CPU provider:
    the file `onnx`, or, without one, an export of the model made (and verified) for this run."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if onnx:
        runtime = "onnxruntime"
    if runtime == "onnxruntime" and (dtype != "fp32" or device != "cpu"):
        raise ConfigError("the onnxruntime benchmark runs the fp32 export on the CPU (leave --dtype and --device out)")
    if runs < 1 or warmup < 0 or batch < 1:
        raise ConfigError("--runs and --batch must be >= 1 and --warmup >= 0")
    if size % 32:
        raise ConfigError(f"--size {size} is not a multiple of 32")
    if threads is not None and not 1 <= threads <= cpu_cores():
        raise ConfigError(f"--threads {threads}: expected 1 to {cpu_cores()} (the CPUs this process may use)")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        if runtime == "onnxruntime":
            return _run_onnx(model, weights, onnx, size, batch, runs, warmup, threads)
        return _run(model, weights, size, dtype, batch, runs, warmup, device, eager)
    finally:
        torch.set_num_threads(previous_threads)


def _time_calls(fn, runs: int, warmup: int, device: str = "cpu") -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of `runs` calls of fn() after `warmup` untimed ones."""
    times, cpu_times = [], []
    for i in range(warmup + runs):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
    return times, cpu_times


def _run(
    model: str | None,
    weights: str | None,
    size: int,
    dtype: str,
    batch: int,
    runs: int,
    warmup: int,
    device: str,
    eager: bool = False,
) -> dict[str, Any]:
    net = from_pretrained(weights) if weights or model is None else GEM.from_config(model)
    net = fuse_for_inference(net.to(device))
    scorer = ModelScorer(net, torch.device(device), resolve_dtype(dtype), graphs=False if eager else None)
    if scorer.graphs is not None:
        scorer.graphs.after_seconds = 0.0  # the steady state a long stream reaches: trace in the warm-up
    images = torch.rand(batch, 3, size, size, device=device) * 255
    load_before = _load_average()
    times, cpu_times = _time_calls(lambda: scorer(images), runs, warmup, device)
    flops = count_flops(net, images, dtype)
    result = _summary(net.cfg.name, weights, size, batch, dtype, device, runs, times, cpu_times, flops, load_before)
    graphs = scorer.graphs
    result["runtime"] = "torch"
    # whether the timed calls ran a TorchScript graph (they do not under autocast, on GPUs, or if tracing failed)
    result["graph"] = bool(graphs is not None and graphs.graphs and graphs.failed is None)
    return result


def _run_onnx(
    model: str | None,
    weights: str | None,
    onnx: str | None,
    size: int,
    batch: int,
    runs: int,
    warmup: int,
    threads: int | None,
) -> dict[str, Any]:
    net = None  # the model whose FLOPs are counted: the exported one, or built from the file's config
    with tempfile.TemporaryDirectory(prefix="glassgem-bench-") as tmp:
        if onnx is None:
            net = from_pretrained(weights) if weights or model is None else GEM.from_config(model)
            onnx_path = str(Path(tmp) / "model.onnx")
            print(
                f"exporting {net.cfg.name} at {size}x{size} to ONNX for the benchmark (verified against PyTorch) ...",
                flush=True,
            )
            export_onnx(net.eval(), onnx_path, size=size, dynamic_batch=batch > 1)
        else:
            onnx_path = onnx
        n_threads = threads or torch.get_num_threads()
        scorer = load_onnx_scorer(onnx_path, threads=n_threads)
        if scorer.input_size is not None and scorer.input_size != (size, size):
            h, w = scorer.input_size
            raise ConfigError(f"{onnx_path}: exported for {h}x{w} inputs, not --size {size}")
        if not scorer.batch_dynamic and batch != scorer.batch_size:
            raise ConfigError(f"{onnx_path}: exported for batch {scorer.batch_size}, not --batch {batch}")
        images = (torch.rand(batch, 3, size, size) * 255).numpy()
        load_before = _load_average()
        times, cpu_times = _time_calls(lambda: scorer(images), runs, warmup)
        if net is None and scorer.config:
            net = GEM(ModelConfig.from_dict(scorer.config))
        elif net is None:
            if model is None:
                raise ConfigError(f"{onnx_path}: no glassgem config in the file; give --model to count its FLOPs")
            net = GEM.from_config(model)
        flops = count_flops(net.eval(), torch.from_numpy(images))  # same graph: count it on the PyTorch model
    result = _summary(net.cfg.name, weights, size, batch, "fp32", "cpu", runs, times, cpu_times, flops, load_before)
    result.update(runtime="onnxruntime", onnx=onnx, threads=n_threads)
    return result


def _summary(
    name: str,
    weights: str | None,
    size: int,
    batch: int,
    dtype: str,
    device: str,
    runs: int,
    times: list[float],
    cpu_times: list[float],
    flops: int,
    load_before: float | None,
) -> dict[str, Any]:
    times_ms = sorted(1000 * t for t in times)
    median = statistics.median(times_ms)
    achieved = flops / (median / 1000) / 1e9
    result: dict[str, Any] = {
        "model": name,
        "weights": weights,
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "device": device,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "median_ms": median,
        "p90_ms": times_ms[min(len(times_ms) - 1, int(round(0.9 * (len(times_ms) - 1))))],
        "min_ms": times_ms[0],
        "gflops": flops / 1e9,
        "achieved_gflops_per_s": achieved,
        # CPU seconds this process spent per run (all threads): on a busy machine, with 1 thread, this is
        # close to the quiet-machine latency while wall-clock time is not
        "median_cpu_ms": statistics.median(1000 * c for c in cpu_times),
        # other processes on the machine distort timings: keep the 1-minute load average with them
        "load_average": [load_before, _load_average()],
    }
    for ref in ["fp32"] + ([dtype] if dtype != "fp32" else []):
        peak, n = matmul_gflops(ref, device=device)
        result[f"matmul_{ref}_gflops_per_s"] = peak
        result[f"matmul_{ref}_n"] = n
        result[f"fraction_of_matmul_{ref}"] = achieved / peak
    if device == "cpu" and dtype == "bf16":
        result["native_bf16"] = native_bf16()
    return result


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['model']} {r['size']}x{r['size']} batch {r['batch']} {r['dtype']} on {r['device']}"
        f"{' with onnxruntime' if r.get('runtime') == 'onnxruntime' else ''}"
        f"{' as a TorchScript graph' if r.get('graph') else ''}, "
        f"{r['threads']} threads, {r['runs']} runs",
        f"  latency   median {r['median_ms']:.1f} ms   p90 {r['p90_ms']:.1f} ms   min {r['min_ms']:.1f} ms   "
        f"(CPU time per run {r['median_cpu_ms']:.1f} ms)",
        f"  FLOPs     {r['gflops']:.2f} GFLOP (2·MAC, torch flop counter)   "
        f"achieved {r['achieved_gflops_per_s']:.1f} GFLOP/s",
    ]
    if None not in r.get("load_average", [None]):
        lines[0] += f" (load average {r['load_average'][0]:.2f} -> {r['load_average'][1]:.2f})"
    for key in sorted(k for k in r if k.startswith("matmul_") and k.endswith("_gflops_per_s")):
        ref, n = key.split("_")[1], r[key.replace("gflops_per_s", "n")]
        lines.append(f"  vs {n}² {ref} matmul at {r[key]:.1f} GFLOP/s: {100 * r[f'fraction_of_matmul_{ref}']:.1f}%")
    if r.get("native_bf16") is False:
        lines.append("  note: this CPU has no native bf16 matmul (no AVX512-BF16/AMX); bf16 runs emulated and slow")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


__all__ = [
    "DTYPES",
    "RUNTIMES",
    "benchmark",
    "count_flops",
    "format_report",
    "matmul_gflops",
    "native_bf16",
    "write_json",
]
