"""ONNX graphs of glassgem weights, made on first use and kept in the user cache (hub/cache.py).

`glassgem predict` and `glassgem.Predictor` take a precision: "fp32" runs the weights in PyTorch, "int8"
runs them through onnxruntime as an int8 graph (quantize.py), and "auto", their default, picks int8 where it
was measured to keep the accuracy bound and to be faster (`auto_precision`): a shipped model listed in
INT8_BY_DEFAULT, on a CPU, in fp32 without a replaced score smoothing, with onnxruntime (and onnxscript, which
makes the graph) installed and a writable user cache; fp32 everywhere else.

The graph is exported (export.py, dynamic batch, verified against PyTorch) and quantized once per weights
file, test size, glassgem graph recipe, torch and quantizer version (the int8 weights' type follows the
CPU, quantize.int8_weight_type): about 35 s and 2.4 GB of memory for GEM-S on a 2-core CPU. The cache entry
(36 MiB for GEM-S) is keyed by the SHA-256 of the weights file and of its config, so new weights never read
an old graph; a broken entry is made again; without a usable cache an explicit "int8" is made in memory
each time, and "auto" stays with fp32 rather than pay the export on every start.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..hub.cache import cache_usable, cached_bytes, file_sha256
from ..hub.pretrained import CONFIG_NAME, SHIPPED_WEIGHTS, WEIGHTS_NAME, resolve_pretrained
from .onnx_runner import OnnxScorer
from .quantize import AUTO, PRECISIONS, PREDICT_PRECISIONS, quantizer_version
from .runtime import resolve_dtype

# Shipped models whose int8 graph keeps gdd-dev/val and low-glass-crop IoU within 0.005 of fp32 and >= 99% of
# the mask pixels (benchmarks/bench_int8.py, docs/speed.md) and runs faster than PyTorch fp32 on the CPUs
# measured; GEM-Lite's time is in convolutions, which stay fp32, so it keeps PyTorch's TorchScript graphs.
INT8_BY_DEFAULT = ("gem-s",)
GRAPH_RECIPE = "g3"  # bump when the exported graph changes for the same weights (export.py's forms, options)
# The graph sums the 16 of 50 queries with the most class probability (GEM.semantic_scores' max_queries: the
# others' weights add up to < 0.09 on real photos) and runs onnxruntime's own attention and GELU kernels
# (graph_fusion.py): together with the export's ConvTranspose form ~20% faster than the plain int8 graph.
GRAPH_QUERIES = 16
CACHE_NAME = "weights-graph"
log = logging.getLogger(__name__)


def check_precision(precision: Any) -> str:
    if precision not in PREDICT_PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose one of {', '.join(PREDICT_PRECISIONS)}")
    return str(precision)


def _shipped_name(weights: Any) -> str | None:
    """The shipped model's name when `weights` (None, a name or a path) resolves to a shipped folder, else None."""
    if weights is not None and not isinstance(weights, (str, Path)):
        return None
    try:
        folder = resolve_pretrained(weights).resolve()
    except (CheckpointError, OSError, ValueError):
        return None
    return folder.name if folder.parent == SHIPPED_WEIGHTS.resolve() else None


def _on_cpu(device: Any) -> bool:
    if device is None:
        import torch

        return not torch.cuda.is_available()
    return str(device) == "cpu"


def _onnxruntime_installed() -> bool:
    """onnxruntime runs the graph; onnxscript is what torch's exporter needs to make it (both core dependencies,
    checked for environments installed another way)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnxscript") is not None


def auto_precision(weights: Any, device: Any = None, dtype: Any = None, smoothing: Any = None) -> str:
    """ "int8" where the int8 graph is the better default for these weights and options (module docstring),
    else "fp32"."""
    if not (resolve_dtype(dtype) is None and smoothing is None and _on_cpu(device)):
        return "fp32"
    if _shipped_name(weights) not in INT8_BY_DEFAULT or not _onnxruntime_installed() or not cache_usable():
        return "fp32"
    return "int8"


def weights_graph(weights: Any, precision: str, size: int | None = None, device: str = "cpu") -> OnnxScorer:
    """The weights (None: the shipped default, a shipped name or a glassgem folder) as an onnxruntime scorer
    of `precision` ("fp32" or "int8") at the square test `size` (default: the model's), made once and then
    read from the user cache."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: a graph is one of {', '.join(PRECISIONS)}")
    folder = resolve_pretrained(weights)
    config, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not (folder.is_dir() and config.is_file() and weights_file.is_file()):
        raise CheckpointError(
            f"{folder}: precision {precision} runs a glassgem weights folder ({CONFIG_NAME} and {WEIGHTS_NAME}) or "
            "an .onnx file (glassgem export onnx); other checkpoints run in fp32"
        )
    quantizer = quantizer_version() if precision == "int8" else "fp32"
    version = f"{GRAPH_RECIPE}-{size or 'own'}-c{file_sha256(config)[:16]}-torch{torch.__version__}-{quantizer}"
    label = f"{folder.name} ({precision})"

    def build() -> bytes:
        from ..hub.pretrained import from_pretrained
        from .export import export_onnx

        log.warning(
            "glassgem: making the %s graph of %s for this CPU, once (about 35 s for GEM-S; kept in the user cache)",
            precision,
            folder.name,
        )
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="glassgem-graph-") as tmp:
            out = Path(tmp) / "graph.onnx"
            export_onnx(
                from_pretrained(folder),
                out,
                size=size,
                dynamic_batch=True,
                precision=precision,
                max_queries=GRAPH_QUERIES,
                ort_ops=True,
            )
            data = out.read_bytes()
        log.info("glassgem: %s graph made in %.0f s", label, time.perf_counter() - start)
        return data

    data = cached_bytes(f"{CACHE_NAME}-{precision}", version, weights_file, build)
    return OnnxScorer.from_bytes(data, source=label, device=device, spinning=False)


__all__ = [
    "AUTO",
    "INT8_BY_DEFAULT",
    "PREDICT_PRECISIONS",
    "auto_precision",
    "check_precision",
    "weights_graph",
]
