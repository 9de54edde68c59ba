"""Rewrites of an exported GEM graph for onnxruntime's own kernels (com.microsoft ops).

- Attention: the exporter writes a ViT attention as qkv [B,N,3C] -> Reshape [B,N,3,H,D] -> Transpose ->
  Gather q, k, v -> q·s, k·s (s = D^-1/4) -> MatMul -> Softmax -> MatMul -> Transpose -> Reshape [B,N,C]: two
  transposes of the activations and three full-size products per block. `MultiHeadAttention` does the same
  in one node from q, k and v in [B,N,C] (its default scale is D^-1/2 = s·s), which three projections of
  the block's input make (the qkv weights cut in three) instead of one projection and a copy per part.
- GELU: x·0.5·(1 + erf(x/√2)) exported as five element-wise nodes becomes one `Gelu` node.
Together ~15% of GEM-S's int8 CPU time. A fused graph runs only in onnxruntime, so only the graphs glassgem
makes for itself (weight_graphs.py) are fused, never a file `glassgem export onnx` writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MS_DOMAIN = "com.microsoft"


def _constant(name: str, initializers: dict[str, Any], constants: dict[str, Any]) -> np.ndarray | None:
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    if name in constants:
        return numpy_helper.to_array(constants[name].attribute[0].t)
    return None


def _made_by(producer: dict[str, Any], name: str, op: str):
    """The node that makes `name` if it is an `op`, else None."""
    node = producer.get(name)
    return node if node is not None and node.op_type == op else None


def _attention(softmax, producer, consumers, initializers, constants):
    """The nodes of one exported attention around `softmax` -> (qkv name, heads, last Reshape), or None."""

    def made_by(name: str, op: str):
        return _made_by(producer, name, op)

    def only_user(name: str, op: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    scores = made_by(softmax.input[0], "MatMul")
    q_scaled = scores and made_by(scores.input[0], "Mul")
    q = q_scaled and made_by(q_scaled.input[0], "Gather")
    heads_first = q and made_by(q.input[0], "Transpose")
    split_heads = heads_first and made_by(heads_first.input[0], "Reshape")
    if split_heads is None:
        return None
    shape = _constant(split_heads.input[1], initializers, constants)
    scale = _constant(q_scaled.input[1], initializers, constants)
    if shape is None or shape.shape != (5,) or shape[2] != 3 or scale is None or scale.size != 1:
        return None
    heads, head_dim = int(shape[3]), int(shape[4])
    if not np.isclose(float(scale.reshape(())), head_dim**-0.25, rtol=1e-5):
        return None
    mixed = only_user(softmax.output[0], "MatMul")
    back = mixed and only_user(mixed.output[0], "Transpose")
    merge = back and only_user(back.output[0], "Reshape")
    if merge is None:
        return None
    return split_heads.input[0], heads, head_dim, merge


def _gelu(final, producer, initializers, constants):
    """x·(0.5·(1 + erf(x/√2))) ending at the Mul `final` -> x's name, or None."""

    def made_by(name: str, op: str):
        return _made_by(producer, name, op)

    def is_const(name: str, value: float) -> bool:
        c = _constant(name, initializers, constants)
        return c is not None and c.size == 1 and bool(np.isclose(float(c.reshape(())), value, rtol=1e-4))

    for x, half in (final.input, final.input[::-1]):
        scaled = made_by(half, "Mul")
        if scaled is None:
            continue
        for one_plus, c_half in (scaled.input, scaled.input[::-1]):
            add = made_by(one_plus, "Add")
            if add is None or not is_const(c_half, 0.5):
                continue
            for erf_out, c_one in (add.input, add.input[::-1]):
                erf = made_by(erf_out, "Erf")
                if erf is None or not is_const(c_one, 1.0):
                    continue
                inner = producer.get(erf.input[0])
                if inner is None or inner.input[0] != x:
                    continue
                if (inner.op_type == "Div" and is_const(inner.input[1], 2**0.5)) or (
                    inner.op_type == "Mul" and is_const(inner.input[1], 2**-0.5)
                ):
                    return x
    return None


def _projection(name: str, producer, initializers):
    """`name` = x @ W + b with W [C, 3C] and b [3C] constants -> (MatMul, Add, x, W, b), or None."""
    from onnx import numpy_helper

    add = _made_by(producer, name, "Add")
    if add is None:
        return None
    for product, bias in (add.input, add.input[::-1]):
        matmul = _made_by(producer, product, "MatMul")
        if matmul is None or bias not in initializers or matmul.input[1] not in initializers:
            continue
        w, b = (numpy_helper.to_array(initializers[n]) for n in (matmul.input[1], bias))
        if w.ndim == 2 and b.shape == (w.shape[1],):
            return matmul, add, matmul.input[0], w, b
    return None


def _q_k_v(qkv: str, tag: str, producer, initializers, graph, c: int) -> list:
    """Nodes that make `{tag}_q`, `_k`, `_v` [B,N,C] from the attention's qkv [B,N,3C]: three projections of
    its input when qkv is one (a slice of the weights each, which int8 quantizes per output channel just as
    the whole, without copying q, k and v out of qkv), else one Split of qkv."""
    from onnx import TensorProto, helper, numpy_helper

    names = [f"{tag}_{part}" for part in "qkv"]
    found = _projection(qkv, producer, initializers)
    if found is None or found[3].shape[1] != 3 * c:
        graph.initializer.append(helper.make_tensor(f"{tag}_sizes", TensorProto.INT64, [3], [c] * 3))
        return [helper.make_node("Split", [qkv, f"{tag}_sizes"], names, axis=-1, name=f"{tag}_split")]
    matmul, add, x, w, b = found
    nodes = []
    for i, name in enumerate(names):
        graph.initializer.append(numpy_helper.from_array(w[:, i * c : (i + 1) * c].copy(), f"{name}_weight"))
        graph.initializer.append(numpy_helper.from_array(b[i * c : (i + 1) * c].copy(), f"{name}_bias"))
        nodes.append(helper.make_node("MatMul", [x, f"{name}_weight"], [f"{name}_product"], name=f"{name}_matmul"))
        nodes.append(helper.make_node("Add", [f"{name}_product", f"{name}_bias"], [name], name=f"{name}_add"))
        for new, old in ((nodes[-2], matmul), (nodes[-1], add)):  # the module path the int8 scope reads
            new.metadata_props.extend(old.metadata_props)
    return nodes


def fuse_for_onnxruntime(proto) -> dict[str, int]:
    """Rewrite `proto` (an onnx ModelProto, in place): every exported ViT attention becomes q, k and v
    projections + one MultiHeadAttention node and every exact GELU one Gelu node; the nodes and constants
    no longer needed are removed. -> {"attention": n, "gelu": n} fused."""
    from onnx import helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replace: dict[int, list] = {}  # id(last Reshape) -> the nodes that take its place
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        found = _attention(softmax, producer, consumers, initializers, constants)
        if found is None:
            continue
        qkv, heads, head_dim, merge = found
        tag = f"glassgem_mha{len(replace)}"
        replace[id(merge)] = [
            *_q_k_v(qkv, tag, producer, initializers, graph, heads * head_dim),
            helper.make_node(
                "MultiHeadAttention",
                [f"{tag}_q", f"{tag}_k", f"{tag}_v"],
                [merge.output[0]],
                domain=MS_DOMAIN,
                num_heads=heads,
                name=tag,
            ),
        ]
    attention = len(replace)
    for final in [n for n in graph.node if n.op_type == "Mul"]:
        x = _gelu(final, producer, initializers, constants)
        if x is not None:
            tag = f"glassgem_gelu{len(replace) - attention}"
            replace[id(final)] = [helper.make_node("Gelu", [x], [final.output[0]], domain=MS_DOMAIN, name=tag)]
    counts = {"attention": attention, "gelu": len(replace) - attention}
    if not replace:
        return counts
    nodes = []
    for node in graph.node:  # the new nodes where the Reshape was: the order stays topological
        nodes.extend(replace.get(id(node), [node]))
    nodes = _live(nodes, {o.name for o in graph.output})
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    made = used | {name for node in nodes for name in node.output}
    shapes = [v for v in graph.value_info if v.name in made]
    del graph.value_info[:]
    graph.value_info.extend(shapes)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(op.domain == MS_DOMAIN for op in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return counts


def _live(nodes: list, outputs: set[str]) -> list:
    """`nodes` without those whose outputs nothing uses (repeatedly), in their order."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]


__all__ = ["fuse_for_onnxruntime"]
