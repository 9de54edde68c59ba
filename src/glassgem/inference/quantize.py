"""int8 ONNX graphs: onnxruntime's dynamic quantization of an exported glassgem graph.

The weights of every MatMul and Gemm node with a constant weight matrix (the ViT's and the decoder's
linear layers: where a ViT spends its time) are stored as 8-bit integers, one scale and zero point per
output channel; at run time each call quantizes the layer's input to uint8 (DynamicQuantizeLinear) and
runs MatMulInteger. The weights' type follows the CPU (`int8_weight_type`): int8 where the CPU has VNNI
(AVX512-VNNI or AVX-VNNI), whose uint8 x int8 dot products sum in 32 bits and are onnxruntime's fastest
kernel (GEM-S 122 against 188 ms a photo with uint8 weights on a 2-core Xeon); uint8 elsewhere: on x86
CPUs without VNNI (AVX2, AVX-512 before VNNI) onnxruntime computes uint8 x int8 products with an
instruction whose 16-bit sums saturate, and the scores then drift (a random debug model's: 3.5% of their
range with int8 weights against 0.4% with uint8 on an AVX2 EPYC; GEM-S's masks agreed with fp32 on 99.44%
against 99.64% of the gdd-dev/val pixels, at the same speed). The type is recorded in the graph's metadata
(`glassgem.int8_weights`): an int8-weight file made on a VNNI machine drifts on a CPU without VNNI, so
quantize on (or for) the CPU that runs it. Convolutions, attention products, LayerNorms and the deformable
sampling stay fp32 (onnxruntime's ConvInteger has no fast CPU kernel). No calibration data is needed.

The quantized graph keeps the file's glassgem metadata and adds `glassgem.precision = int8`; it maps
images to scores like the fp32 graph (onnx_runner.OnnxScorer runs both). `benchmarks/bench_int8.py`
measures its speed and its masks against fp32 on gdd-dev/val (docs/speed.md): one scale per tensor
instead of per channel kept GEM-S's IoU but its masks agreed with fp32 on only 98.9% of the pixels.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import CheckpointError, GlassgemError

PRECISIONS = ("fp32", "int8")  # of a graph
AUTO = "auto"
PREDICT_PRECISIONS = (AUTO, *PRECISIONS)  # what glassgem predict and Predictor take (weight_graphs.py)


WEIGHT_TYPES = ("u8", "s8")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def int8_weight_type(cpuinfo: str | None = None) -> str:
    """ "s8" (int8 weights) on an x86 CPU with VNNI, else "u8" (module docstring). `cpuinfo`: the text of
    /proc/cpuinfo (read when None; a system without it, or another architecture, gets "u8")."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return "u8"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return "s8" if any(flag in value.split() for flag in _VNNI_FLAGS) else "u8"
    return "u8"


def quantizer_version(weight_type: str | None = None) -> str:
    """What a cached int8 graph depends on besides its source file: this recipe, the weights' type (this
    CPU's when None) and onnxruntime's version."""
    from importlib.metadata import PackageNotFoundError, version

    recipe = f"dyn3{weight_type or int8_weight_type()}"
    try:
        return f"{recipe}-ort{version('onnxruntime')}"
    except PackageNotFoundError:
        return recipe


META_PRECISION = "glassgem.precision"
META_WEIGHTS = "glassgem.int8_weights"
INT8_OPS = ("MatMul", "Gemm")


def _quantization():
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise GlassgemError(
            f"int8 needs onnx and onnxruntime ({e}): pip install -e . in your glassgem "
            "clone (or pip install onnx onnxruntime)"
        ) from None
    return onnx, quantize_dynamic, QuantType


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizer's advice to pre-process the graph (a root-logger warning on every call)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def precision_of(model) -> str:
    """ "int8" for a graph this module quantized, else "fp32" (an onnx.ModelProto)."""
    return next((p.value for p in model.metadata_props if p.key == META_PRECISION), "fp32")


def _module_paths(node) -> list[str]:
    """The torch module paths the exporter recorded for `node` (its `namespace` metadata:
    `name: type/name: type/...`), with the export wrapper's leading `model.` removed."""
    namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    names = (part.split(":")[0].strip() for part in namespace.split("/"))
    return [n[len("model.") :] for n in names if n.startswith("model.")]


def weight_nodes(model, scope: str | None = None) -> list[str]:
    """Names of the MatMul/Gemm nodes with a constant weight matrix (linear layers; a product with a constant
    vector is left alone), those of modules under `scope` (a module path
    of the GEM model, e.g. "encoder") only when given."""
    matrices = {t.name for t in model.graph.initializer if len(t.dims) == 2}
    found = []
    for node in model.graph.node:
        if node.op_type not in INT8_OPS or len(node.input) < 2 or node.input[1] not in matrices:
            continue
        if scope is None or any(m == scope or m.startswith(scope + ".") for m in _module_paths(node)):
            found.append(node.name)
    return found


def quantize_int8(
    data: bytes,
    source: str = "<bytes>",
    scope: str | None = None,
    per_channel: bool = True,
    weight_type: str | None = None,
) -> bytes:
    """The serialized fp32 glassgem graph `data` with int8 MatMul/Gemm weights (module docstring).
    A graph that is already int8 comes back as it is. CheckpointError when `data` is not an ONNX graph.
    scope: quantize only the layers of this GEM module ("encoder"); per_channel=False: one weight scale
    per tensor instead of one per output channel; weight_type: "u8" or "s8" (default: this CPU's,
    int8_weight_type).

    onnxruntime's quantizer writes its result to a file: a temporary folder holds it until it is read."""
    weight_type = weight_type or int8_weight_type()
    if weight_type not in WEIGHT_TYPES:
        raise GlassgemError(f"int8 weight type {weight_type!r}: choose one of {', '.join(WEIGHT_TYPES)}")
    onnx, quantize_dynamic, QuantType = _quantization()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf decode errors have no common public type
        raise CheckpointError(f"{source}: not a readable ONNX file ({e})") from None
    if precision_of(model) == "int8":
        return data
    nodes = weight_nodes(model, scope)
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm"}
    # the quantizer first splits each Gemm into `<name>_MatMul` + `<name>_Add` and quantizes that MatMul
    chosen = nodes + [f"{name}_MatMul" for name in nodes if name in gemms]
    if not nodes:
        raise CheckpointError(
            f"{source}: no MatMul or Gemm weights{f' under {scope!r}' if scope else ''} to "
            "quantize (is it a glassgem export?)"
        )
    with tempfile.TemporaryDirectory(prefix="glassgem-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        try:
            with _quiet():
                quantize_dynamic(
                    model,
                    out,
                    op_types_to_quantize=list(INT8_OPS),
                    nodes_to_quantize=chosen,
                    weight_type=QuantType.QInt8 if weight_type == "s8" else QuantType.QUInt8,
                    per_channel=per_channel,
                    extra_options={"MatMulConstBOnly": True},
                )
        except Exception as e:  # the quantizer raises plain Exceptions and assertion errors on odd graphs
            raise CheckpointError(f"{source}: onnxruntime cannot quantize it ({type(e).__name__}: {e})") from None
        quantized = onnx.load(str(out))
    kept = {p.key for p in quantized.metadata_props}
    for prop in model.metadata_props:  # the quantizer keeps them today; make sure
        if prop.key not in kept:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key=META_PRECISION, value="int8")
    quantized.metadata_props.add(key=META_WEIGHTS, value=weight_type)
    return quantized.SerializeToString()


__all__ = [
    "AUTO",
    "INT8_OPS",
    "META_PRECISION",
    "META_WEIGHTS",
    "PRECISIONS",
    "PREDICT_PRECISIONS",
    "WEIGHT_TYPES",
    "int8_weight_type",
    "precision_of",
    "quantize_int8",
    "quantizer_version",
    "weight_nodes",
]
