"""ONNX export of the whole GEM network, semantic inference included.

The graph maps `images` float32 [B, 3, H, W] (RGB 0..255, not normalised) to `scores` float32
[B, 2, H, W] (background, glass): the same numbers as `GEM.semantic_scores`, so `scores.argmax(1)` is the
glass map. H and W are fixed at export time; the batch is fixed (1) or dynamic (`dynamic_batch=True`).

Exporter: torch's default (dynamo) exporter, `torch.onnx.export(..., dynamo=True)`. It traces the model
code as it is (symbolic shapes give a real dynamic batch; top-k, gather, grid_sample, einsum and
LayerNorm translate to native ONNX ops). The older TorchScript exporter (`dynamo=False`, deprecated) fails
on this model: `F.layer_norm(x, (x.shape[1],))` in the channel LayerNorms becomes a runtime shape, which
its LayerNormalization translation cannot take. The dynamo exporter starts at opset 18; asking it for 17
leaves the graph at 18 (the ONNX version converter cannot take its Reduce ops down), so opsets below 18
are refused.

The exportable forms of the modules and the semantic post-processing: export_forms.py.

After export the graph is run with onnxruntime on a random input and compared with
`GEM.semantic_scores`; a difference above `tolerance` raises ExportVerificationError and the file goes
to `<out>.unverified.onnx` instead of `<out>`. `glassgem.inference.onnx_runner` runs exported files.

Known limit (the model's, not the export's): DQS ranks positions with top-k over max-softmax scores and
pairs rank i with anchor i. Where scores tie exactly (a saturated softmax is exactly 1.0 in fp32),
onnxruntime's TopK takes the lower index first and torch.topk promises no order; where they are within
float rounding (~1e-7 with random weights), any two runtimes may order them differently. Such an image's
scores then differ by ~1e-2 instead of ~1e-5. The check input is chosen to avoid this (`check_inputs`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import __version__
from ..errors import ConfigError, GlassgemError
from ..io import atomic_write_bytes
from ..model.gem import GEM
from .export_forms import SemanticScores, use_export_forms
from .graph_fusion import fuse_for_onnxruntime
from .onnx_runner import OnnxScorer, load_onnx_scorer  # noqa: F401  (re-exported: export + run in one place)
from .quantize import PRECISIONS, quantize_int8

MIN_OPSET = 18
DEFAULT_OPSET = 18
TOLERANCE = 1e-3  # max abs difference of the scores (sums over queries, ~10..40) onnxruntime vs PyTorch
INPUT_NAME, OUTPUT_NAME = "images", "scores"
# metadata_props keys (all strings)
META_VERSION = "glassgem.version"
META_MODEL = "glassgem.model_name"
META_CONFIG = "glassgem.config"
META_SIZE = "glassgem.input_size"  # "HxW"
META_DYNAMIC_BATCH = "glassgem.dynamic_batch"  # "true" | "false"
META_DIFF = "glassgem.verified_max_abs_diff"
META_TORCH = "glassgem.torch_version"
META_OUTPUT = "glassgem.output"
OUTPUT_DOC = (
    "scores float32 [B,2,H,W]: background, glass (sums over queries of class probability x mask "
    "probability, box-smoothed per the config's score_smoothing, as GEM.semantic_scores); argmax over "
    "dim 1 is the glass map"
)


class ExportVerificationError(GlassgemError):
    """The exported graph's output differs from PyTorch's by more than the tolerance."""


@dataclass
class ExportReport:
    path: Path
    input_size: tuple[int, int]  # (H, W)
    dynamic_batch: bool
    opset: int
    max_abs_diff: float | None  # None when not verified
    argmax_agreement: float | None  # share of pixels where onnxruntime and PyTorch pick the same class
    seconds: float
    size_bytes: int
    precision: str = "fp32"
    int8_agreement: float | None = None  # int8 graph vs PyTorch (fp32), share of pixels of the same class

    def line(self) -> str:
        h, w = self.input_size
        batch = "dynamic batch" if self.dynamic_batch else "batch 1"
        check = (
            "not verified"
            if self.max_abs_diff is None
            else f"onnxruntime vs PyTorch: max abs diff {self.max_abs_diff:.2e}, "
            f"same class on {self.argmax_agreement:.4%} of pixels"
        )
        if self.int8_agreement is not None:
            check += f"; quantized to int8: same class as PyTorch on {self.int8_agreement:.2%} of pixels"
        return (
            f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB, {h}x{w}, {batch}, opset {self.opset}, "
            f"{self.precision}) in {self.seconds:.0f} s; {check}"
        )


def parse_size(size: int | str | tuple[int, int] | None, default: int) -> tuple[int, int]:
    """384, "384", "320x448" (height x width), (320, 448) or None (= default square) -> (H, W),
    both positive multiples of 32; ConfigError otherwise."""
    if size is None:
        size = default
    if isinstance(size, str):
        try:
            parts = [int(v) for v in size.lower().replace("×", "x").split("x")]
        except ValueError:
            raise ConfigError(f"size {size!r}: expected N or HxW, e.g. 384 or 320x448") from None
        if len(parts) not in (1, 2):
            raise ConfigError(f"size {size!r}: expected N or HxW, e.g. 384 or 320x448")
        size = parts[0] if len(parts) == 1 else (parts[0], parts[1])
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ConfigError(f"size {h}x{w}: height and width must be positive multiples of 32")
    return h, w


def check_inputs(
    model: GEM, hw: tuple[int, int], batch: int, seed: int = 0, pool: int = 4, max_queries: int | None = None
) -> tuple[Tensor, Tensor, float]:
    """Random images 0..255 to trace and verify on, PyTorch's scores for them, and their DQS ranking gap.

    DQS keeps the k positions with the highest max-softmax score, in rank order, and each rank has its own
    anchor; with scores equal to ~1e-7 (random weights, or a saturated softmax), float rounding alone
    can reorder them, which moves scores by ~1e-2. So of `pool` random images the `batch` with the widest
    smallest gap between consecutive ranks (up to rank k+1) are used. -> (images, scores, smallest gap).
    """
    images = torch.rand(max(pool, batch), 3, *hw, generator=torch.Generator().manual_seed(seed)) * 255.0
    gaps: list[Tensor] = []
    dqs = getattr(model, "query_selection", None)
    hook = (
        None
        if dqs is None
        else dqs.register_forward_hook(lambda mod, args, out: gaps.append(_rank_gaps(out.scores, mod.num_queries)))
    )
    try:
        with torch.no_grad():
            # also raises the model's own clear errors (size, queries, max_queries)
            scores = model.semantic_scores(images, max_queries)
    finally:
        if hook is not None:
            hook.remove()
    if not gaps:
        return images[:batch], scores[:batch], float("inf")
    best = gaps[0].argsort(descending=True)[:batch]
    return images[best], scores[best], float(gaps[0][best].min())


def _rank_gaps(scores: Tensor, k: int) -> Tensor:
    """[B, N] DQS scores -> [B] smallest difference between consecutive ranks 1..k+1."""
    top = scores.float().sort(dim=1, descending=True).values[:, : k + 1]
    return (top[:, :-1] - top[:, 1:]).min(dim=1).values


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's deprecation/tracing warnings and onnxscript's per-node optimizer notes."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _trace(
    model: nn.Module, example: Tensor, opset: int, dynamic_batch: bool, optimize: bool, max_queries: int | None = None
):
    """-> onnx.ModelProto of SemanticScores(model, max_queries), traced on `example`."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise GlassgemError(
            f"ONNX export needs onnx and onnxscript ({e}): pip install -e . in your glassgem clone "
            "(or pip install onnx onnxscript)"
        ) from None
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with _quiet():
        try:
            program = torch.onnx.export(
                SemanticScores(model, max_queries),
                (example,),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=dynamic,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                optimize=optimize,
                verify=False,
                external_data=False,
                report=False,
                verbose=False,
            )
        except GlassgemError:
            raise
        except Exception as e:  # the exporter wraps whatever failed in its own error types
            raise GlassgemError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:500]}") from e
        if program is None:  # only the legacy TorchScript exporter (dynamo=False) returns nothing
            raise GlassgemError("ONNX export failed: the exporter returned no program")
        if not optimize:  # still fold the constant subgraphs (BN folding, bias tables): seconds, not minutes
            import onnxscript.optimizer

            onnxscript.optimizer.fold_constants(program.model)
            onnxscript.optimizer.remove_unused_nodes(program.model)
    return program.model_proto


def _set_metadata(proto, entries: dict[str, str]) -> None:
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    for key, value in kept + list(entries.items()):
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def compare_scores(got: Tensor, ref: Tensor) -> tuple[float, float]:
    """(max abs difference, share of pixels with the same argmax class) of two [B,2,H,W] score maps."""
    got, ref = got.float(), ref.float()
    diff = float((got - ref).abs().max())
    same = float((got.argmax(1) == ref.argmax(1)).float().mean())
    return diff, same


def export_onnx(
    model: GEM,
    out: str | Path,
    size: int | str | tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = TOLERANCE,
    optimize: bool = True,
    seed: int = 0,
    precision: str = "fp32",
    max_queries: int | None = None,
    ort_ops: bool = False,
) -> ExportReport:
    """Export `model` (a GEM) with semantic inference to the ONNX file `out`, written atomically.

    size: N or (H, W) / "HxW", multiples of 32 (default: the model's cfg.image_size, square).
    verify: run the file with onnxruntime (CPU) on random input (batch 1; batch 2 and 1 when the batch
    is dynamic; see `check_inputs`) and compare with `model.semantic_scores`; above `tolerance` the file
    is written to `<out stem>.unverified.onnx` instead and ExportVerificationError is raised.
    optimize: run torch's full graph optimizer (onnxscript: constant folding plus op-fusion rewrites; ~500
    fewer nodes for GEM-Tiny). Without it only constant subgraphs are folded and the export takes ~40% less
    time. GEM-Tiny measured no faster in onnxruntime either way (it fuses ops itself when it loads a graph).
    precision="int8": the verified fp32 graph is quantized (quantize.py) before it is written; the int8
    graph's agreement with PyTorch on the check input is reported (its accuracy: benchmarks/bench_int8.py).
    max_queries: the graph sums only the queries with the most class probability (GEM.semantic_scores'
    approximation, checked against it); None: all, the model's own numbers.
    ort_ops: rewrite the ViT's attention and GELUs into onnxruntime's own ops (graph_fusion.py) before the
    check; the file then runs only in onnxruntime.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if opset < MIN_OPSET:
        raise ConfigError(
            f"opset {opset}: the ONNX exporter of torch {torch.__version__} (dynamo) needs "
            f"opset {MIN_OPSET} or newer (onnxruntime >= 1.14 runs it)"
        )
    if not isinstance(model, GEM):
        raise ConfigError(f"export_onnx needs a GEM model, got {type(model).__name__}")
    cfg = model.cfg
    hw = parse_size(size, int(cfg.image_size))
    out = Path(out)
    start = time.perf_counter()
    model = copy.deepcopy(model).float().cpu().eval()  # the caller's model is left as it is
    example, reference, gap = check_inputs(model, hw, 2 if dynamic_batch else 1, seed, max_queries=max_queries)
    use_export_forms(model)
    proto = _trace(model, example, opset, dynamic_batch, optimize, max_queries)
    if ort_ops:
        fuse_for_onnxruntime(proto)
    meta = {
        META_VERSION: __version__,
        META_MODEL: str(cfg.name),
        META_CONFIG: json.dumps(cfg.to_dict()),
        META_SIZE: f"{hw[0]}x{hw[1]}",
        META_DYNAMIC_BATCH: "true" if dynamic_batch else "false",
        META_TORCH: torch.__version__,
        META_OUTPUT: OUTPUT_DOC,
    }
    proto.doc_string = f"glassgem {__version__} {cfg.name}: {OUTPUT_DOC}"
    _set_metadata(proto, meta)
    int8 = None
    diff: float | None
    same: float | None
    if verify:
        diff, same, nbytes = write_verified(proto, out, example, reference, tolerance, gap, precision)
        if precision == "int8":
            int8 = compare_scores(load_onnx_scorer(out)(example), reference)[1]
    else:
        diff = same = None
        data = proto.SerializeToString()
        nbytes = _write(out, quantize_int8(data, str(out)) if precision == "int8" else data)
    return ExportReport(out, hw, dynamic_batch, opset, diff, same, time.perf_counter() - start, nbytes, precision, int8)


def _write(path: Path, data: bytes) -> int:
    atomic_write_bytes(path, data)
    return len(data)


def write_verified(
    proto,
    out: str | Path,
    example: Tensor,
    reference: Tensor,
    tolerance: float = TOLERANCE,
    rank_gap: float = float("inf"),
    precision: str = "fp32",
) -> tuple[float, float, int]:
    """Run `proto` with onnxruntime (CPU) on `example`, compare with `reference` (PyTorch's scores) and
    write it to `out` if the max abs difference is within `tolerance`, recording it in the metadata
    (precision="int8": the checked graph is quantized as it is written).

    -> (max abs diff, argmax agreement, bytes written). Otherwise the graph goes to
    `<out stem>.unverified.onnx`, `out` is left as it was, and ExportVerificationError is raised (with a
    hint when `rank_gap`, the input's smallest DQS ranking gap, is tiny)."""
    out = Path(out)
    scorer = OnnxScorer.from_bytes(proto.SerializeToString(), source=str(out))
    diff, same = compare_scores(scorer(example), reference)
    if scorer.batch_dynamic and example.shape[0] > 1:  # a batch of one takes other paths (size-1 broadcasts)
        diff = max(diff, compare_scores(scorer(example[:1]), reference[:1])[0])
    _set_metadata(proto, {META_DIFF: f"{diff:.3e}"})
    data = proto.SerializeToString()
    if not diff <= tolerance:  # also catches NaN
        bad = out.with_name(out.stem + ".unverified.onnx")
        _write(bad, data)
        tied = (
            f" The DQS scores of the check input are only {rank_gap:.1e} apart, so float rounding may have "
            "reordered near-equal queries (~1e-2 change); if the classes agree, --tolerance 0.05 accepts "
            "that."
            if rank_gap < 1e-5
            else ""
        )
        raise ExportVerificationError(
            f"{out}: onnxruntime and PyTorch scores differ by up to {diff:.3g} (tolerance {tolerance:g}; same "
            f"class on {same:.2%} of pixels); not written there. The graph was saved to {bad} for inspection." + tied
        )
    return diff, same, _write(out, quantize_int8(data, str(out)) if precision == "int8" else data)


__all__ = [
    "DEFAULT_OPSET",
    "ExportReport",
    "ExportVerificationError",
    "SemanticScores",
    "TOLERANCE",
    "OnnxScorer",
    "check_inputs",
    "compare_scores",
    "export_onnx",
    "load_onnx_scorer",
    "parse_size",
    "write_verified",
]
