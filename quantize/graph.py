"""ONNX graph helpers: which MatMuls carry weights, and restoring chosen MatMuls of a QDQ graph to fp32."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes whose second input is a constant weight (activation x weight), in graph order."""
    inits = initializer_names(model)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def down_projections(model: onnx.ModelProto) -> list[str]:
    """Weight MatMuls whose input is wider than their output (FFN down-projections), in graph order."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    out = []
    for name in weight_matmuls(model):
        node = next(n for n in model.graph.node if n.name == name)
        dims = shapes.get(node.input[1], ())
        if len(dims) == 2 and dims[0] > dims[1]:
            out.append(name)
    return out


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul nodes multiplying two activations (attention scores and context)."""
    inits = initializer_names(model)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in inits]


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (exclusion lists refer to names)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def is_quantized(model: onnx.ModelProto) -> bool:
    """True if the graph already holds int8 kernels or Q/DQ pairs."""
    quant_ops = {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
        "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "MatMulNBits", "QGemm",
    }
    return any(n.op_type in quant_ops for n in model.graph.node)


def restore_fp32(qdq: onnx.ModelProto, fp32: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of a QDQ graph in which the MatMuls ``names`` read fp32 activations and weights again.

    Works on graphs from ``quantize_static(..., quant_format=QDQ)``: a quantized MatMul reads
    ``DequantizeLinear(QuantizeLinear(x))`` and ``DequantizeLinear(w_int8)``. Q/DQ nodes and
    initializers left without consumers are removed.
    """
    wanted = set(names)
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    producer = {o: n for n in model.graph.node for o in n.output}
    originals = {n.name: n for n in fp32.graph.node if n.op_type == "MatMul"}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = initializer_names(model)
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.name not in wanted or node.name not in originals:
            continue
        orig = originals[node.name]
        for k in range(2):
            src = producer.get(node.input[k])
            if src is not None and src.op_type == "DequantizeLinear":
                node.input[k] = orig.input[k]
                if orig.input[k] in fp32_inits and orig.input[k] not in have:
                    model.graph.initializer.append(fp32_inits[orig.input[k]])
                    have.add(orig.input[k])
    return prune(model)


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove nodes whose outputs nobody reads, and unread initializers (repeat until stable)."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        keep = [n for n in model.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(model.graph.node):
            break
        del model.graph.node[:]
        model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input} | outputs
    inits = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    return model


def quantize_embedding_tables(
    model: onnx.ModelProto, min_rows: int = 1024, exclude: Iterable[str] = ()
) -> tuple[onnx.ModelProto, list[str]]:
    """Store large Gather tables (word embeddings) as int8 with one scale per row; returns (model, names).

    ``Gather(table, ids)`` becomes ``Cast(Gather(table_int8, ids)) * Unsqueeze(Gather(scales, ids))``:
    a weight-only change (4x smaller table) that costs a few microseconds per call.
    """
    from onnx import helper

    inits = {i.name: i for i in model.graph.initializer}
    skip = set(exclude)
    done: list[str] = []
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table is None or node.name in skip or axis != 0 or len(table.dims) != 2 or table.dims[0] < min_rows or \
                table.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        scale = np.abs(w).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
        base = node.name or node.input[0]
        qn, sn, axes = f"{table.name}_int8", f"{table.name}_row_scale", f"{base}_unsqueeze_axes"
        new_inits += [numpy_helper.from_array(q, qn), numpy_helper.from_array(scale.astype(np.float32), sn),
                      numpy_helper.from_array(np.array([-1], dtype=np.int64), axes)]
        out = node.output[0]
        nodes += [
            helper.make_node("Gather", [qn, node.input[1]], [f"{base}_q"], name=f"{base}_q", axis=0),
            helper.make_node("Cast", [f"{base}_q"], [f"{base}_qf"], name=f"{base}_cast", to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [sn, node.input[1]], [f"{base}_s"], name=f"{base}_scale", axis=0),
            helper.make_node("Unsqueeze", [f"{base}_s", axes], [f"{base}_s2"], name=f"{base}_unsqueeze"),
            helper.make_node("Mul", [f"{base}_qf", f"{base}_s2"], [out], name=f"{base}_dequant"),
        ]
        done.append(node.name)
    if not done:
        return model, []
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    result.graph.initializer.extend(new_inits)
    return prune(result), done


def fuse_static_matmuls(model: onnx.ModelProto, *, fold: bool = True) -> tuple[onnx.ModelProto, int]:
    """Rewrite QDQ MatMuls as ``MatMulIntegerToFloat`` with the bias folded in; fold equalization Muls.

    ``MatMul(DQ(Q(x)), DQ(w_int8)) + bias`` becomes ``MatMulIntegerToFloat(Q(x), w_int8, ..., bias)``
    (ONNX Runtime's own QDQ fusion leaves the bias Add separate), and ``Q(x * 1/s)`` becomes a
    per-channel ``Q(x)`` with scales ``scale * s``, removing one elementwise pass per tensor.
    Returns the model and the number of MatMuls rewritten.
    """
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    view = GraphView(g)
    index = {id(n): k for k, n in enumerate(g.node)}
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    for node in g.node:
        fused = _fused_matmul(node, view) if node.op_type == "MatMul" else None
        if fused is not None:
            replace[index[id(node)]], add = fused
            if add is not None:
                drop.add(index[id(add)])
    if not replace:
        return model, 0
    nodes = [replace.get(k, n) for k, n in enumerate(g.node) if k not in drop]
    del g.node[:]
    g.node.extend(nodes)
    if fold:
        _fold_equalization(out)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return prune(out), len(replace)


class GraphView:
    """Lookups over one graph: initializers, constants (initializers, Constant nodes, through Identity),
    each tensor's producer and readers, the graph's inputs and outputs."""

    def __init__(self, g: onnx.GraphProto) -> None:
        self.inits = {i.name: i for i in g.initializer}
        self.consts = dict(self.inits)
        self.consts.update({n.output[0]: n.attribute[0].t for n in g.node
                            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
        self.producer = {o: n for n in g.node for o in n.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.inputs = {i.name: i for i in g.input}

    def const(self, name: str) -> np.ndarray | None:
        while (node := self.made_by(name, "Identity")) is not None:  # exporters share equal constants
            name = node.input[0]
        return numpy_helper.to_array(self.consts[name]) if name in self.consts else None

    def made_by(self, name: str, *op_types: str) -> onnx.NodeProto | None:
        """The node of one of ``op_types`` (standard ONNX domain) that produces ``name``, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type in op_types and node.domain in ("", "ai.onnx") else None

    def only_reader(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The single reader of ``name`` when it is of ``op_type`` and ``name`` is not a graph output."""
        readers = self.readers.get(name, [])
        if name in self.outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        return readers[0]

    def ints(self, name: str) -> list[int] | None:
        v = self.const(name)
        return [int(x) for x in v.ravel()] if v is not None and v.dtype.kind in "iu" else None


def _fused_matmul(node: onnx.NodeProto, view: GraphView) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
    """``MatMul(DQ(Q(x)), DQ(w))`` (+ a bias Add) as one MatMulIntegerToFloat, and the Add it absorbs."""
    from onnx import helper

    dq_a, dq_b = view.made_by(node.input[0], "DequantizeLinear"), view.made_by(node.input[1], "DequantizeLinear")
    if dq_a is None or dq_b is None or view.made_by(dq_a.input[0], "QuantizeLinear") is None:
        return None
    if dq_b.input[0] not in view.inits or len(dq_a.input) < 3:
        return None
    b_zp = dq_b.input[2] if len(dq_b.input) > 2 else ""
    zp_b = view.const(b_zp) if b_zp else None
    if zp_b is not None and not zp_b.any():
        b_zp = ""  # symmetric weights: omit the zero points (keeps ONNX Runtime on its fast path)
    output, bias, add = node.output[0], "", None
    users = view.readers.get(output, [])
    if len(users) == 1 and users[0].op_type == "Add" and output not in view.outputs:
        other = users[0].input[1] if users[0].input[0] == output else users[0].input[0]
        b = view.const(other)
        if b is not None and b.ndim == 1:
            bias, output, add = other, users[0].output[0], users[0]
    fused = helper.make_node(
        "MatMulIntegerToFloat",
        [dq_a.input[0], dq_b.input[0], dq_a.input[1], dq_b.input[1], dq_a.input[2], b_zp, bias],
        [output], name=node.name, domain="com.microsoft",
    )
    return fused, add


def _fold_equalization(model: onnx.ModelProto) -> None:
    """``QuantizeLinear(Mul(x, inv_s))`` -> per-channel ``QuantizeLinear(x)`` when Q is the Mul's only reader."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    for q in g.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        mul = producer.get(q.input[0])
        if mul is None or mul.op_type != "Mul" or readers.get(mul.output[0], 0) != 1 or mul.input[1] not in inits:
            continue
        inv = numpy_helper.to_array(inits[mul.input[1]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[q.input[1]]) if q.input[1] in inits else None
        zp = numpy_helper.to_array(inits[q.input[2]]) if q.input[2] in inits else None
        if inv.ndim != 1 or scale is None or zp is None or scale.size != 1 or zp.size != 1:
            continue
        name = q.name or q.output[0]
        g.initializer.append(numpy_helper.from_array((float(scale.ravel()[0]) / inv).astype(np.float32),
                                                     f"{name}_channel_scale"))
        g.initializer.append(numpy_helper.from_array(np.full(inv.shape, zp.ravel()[0], dtype=zp.dtype),
                                                     f"{name}_channel_zp"))
        q.input[0], q.input[1], q.input[2] = mul.input[0], f"{name}_channel_scale", f"{name}_channel_zp"
        del q.attribute[:]
        q.attribute.append(onnx.helper.make_attribute("axis", -1))
