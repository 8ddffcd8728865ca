"""A rewrite of a static int8 graph that keeps its numbers and cuts the work around the int8 GEMMs.

A BERT layer exported op by op computes attention as Reshape/Transpose of Q, K and V, ``MatMul``, a
scale, the additive padding mask, ``Softmax``, ``MatMul``, Transpose/Reshape. :func:`fuse_attention`
replaces that core with one ONNX Runtime contrib node fed the raw 0/1 ``attention_mask``:
``QAttention`` when Q, K and V are three ``MatMulIntegerToFloat`` of the same quantized input (their
weights packed into one), else ``MultiHeadAttention`` on the three fp32 projections. Every layer is
pattern-checked; one that does not match exactly is left as it is. The padding mask is matched by its
structure (transformers 4.x) or, failing that, tested numerically (:mod:`.mask_check`: transformers 5).

The fused node gets the mask's own constant c as ``mask_filter_value`` (-3.4028235e38, float32's lowest,
on both transformers lines), not a clamped -1e4: ONNX Runtime's CPU kernels put c where the mask is 0 and
add the scaled scores (finite unless a score is below about -1e31), and softmax subtracts the row maximum,
so a padded key weighs exactly 0 as in the unfused graph; no NaN (that needs an all -inf row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import GraphView, prune
from .mask_check import MIN_MASK_VALUE, KeyPaddingMasks

MS = "com.microsoft"
HEAD_PERM = (0, 2, 1, 3)  # [B, S, N, H] -> [B, N, S, H]
KEY_PERM = (0, 2, 3, 1)  # [B, S, N, H] -> [B, N, H, S]


@dataclass(frozen=True)
class _Attention:
    query: str
    key: str
    value: str
    output: str
    heads: int
    scale: float
    mask: str  # the graph input holding the 0/1 attention mask
    mask_value: float
    nodes: tuple[onnx.NodeProto, ...]  # the nodes the fused node replaces (their readers of shapes die too)


def fuse_int8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The int8 graph with its attention layers fused (see the module); returns (model, layers rewritten).
    The input model is not changed."""
    return fuse_attention(model, packed=True)


def _int_list(node: onnx.NodeProto, name: str) -> list[int]:
    """An ints attribute of ``node`` (empty when absent or not a list of ints)."""
    value = _attr(node, name, [])
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else []


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# -------------------------------------------------------------------------------------------- attention
def fuse_attention(model: onnx.ModelProto, *, packed: bool = True) -> tuple[onnx.ModelProto, int]:
    """Each matching self-attention core as one QAttention (``packed`` and Q/K/V fit) or MultiHeadAttention
    node; returns (model, layers rewritten)."""
    view = GraphView(model.graph)
    padding = KeyPaddingMasks(model, view)
    plans = [p for n in model.graph.node if n.op_type == "Softmax" for p in [_plan(n, view, padding, packed)] if p]
    if not plans:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    replaced = {k for p in plans for k in _keys(p.removed)}
    at = {_key(p.removed[-1]): p for p in plans}  # the fused node takes the place of the final Reshape
    masks = sorted({p.attention.mask for p in plans})
    nodes = [helper.make_node("Cast", [m], [f"{m}_int32"], name=f"{m}_to_int32", to=onnx.TensorProto.INT32)
             for m in masks]
    for node in g.node:
        k = _key(node)
        if k in at:
            nodes.append(at[k].node)
            g.initializer.extend(at[k].initializers)
        elif k not in replaced:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == MS for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS, 1))
    return prune(out), len(plans)


@dataclass(frozen=True)
class _Plan:
    attention: _Attention
    node: onnx.NodeProto
    initializers: tuple[onnx.TensorProto, ...]
    removed: tuple[onnx.NodeProto, ...]  # the fused node takes the place of the last one


def _plan(softmax: onnx.NodeProto, view: GraphView, masks: KeyPaddingMasks, packed: bool) -> _Plan | None:
    """How to fuse the attention layer around ``softmax``, or None to leave it alone."""
    a = _match_attention(softmax, view, masks)
    if a is None or not _replaceable(a.nodes, a.output, view):
        return None
    attrs: dict[str, Any] = {"num_heads": a.heads, "scale": a.scale, "mask_filter_value": a.mask_value}
    mask = f"{a.mask}_int32"
    qkv = _packed_qkv(a, view) if packed else None
    if qkv is not None and _replaceable((*qkv[2], *a.nodes), a.output, view):
        inputs, inits, projections = qkv
        node = helper.make_node("QAttention", [*inputs[:5], mask, inputs[5]], [a.output], name=f"{a.output}_qattention",
                                domain=MS, **attrs)
        return _Plan(a, node, inits, (*projections, *a.nodes))
    node = helper.make_node("MultiHeadAttention", [a.query, a.key, a.value, "", mask], [a.output],
                            name=f"{a.output}_mha", domain=MS, **attrs)
    return _Plan(a, node, (), a.nodes)


def _packed_qkv(a: _Attention, view: GraphView) -> tuple[list[str], tuple, tuple] | None:
    """Q, K and V made by ``MatMulIntegerToFloat`` of one uint8 input with constant weights, scales and biases
    and no weight zero points: (QAttention inputs but the mask, their new initializers, the three nodes)."""
    found = [_projection(t, view) for t in (a.query, a.key, a.value)]
    if any(f is None for f in found):
        return None
    mms, biases = [f[0] for f in found], [f[1] for f in found]  # type: ignore[index]
    first = mms[0]
    if any(m.input[0] != first.input[0] or m.input[2] != first.input[2] or m.input[4] != first.input[4]
           or m.input[5] for m in mms):
        return None
    zero, a_scale = view.const(first.input[4]), view.const(first.input[2])
    weights = [view.const(m.input[1]) for m in mms]
    if zero is None or zero.dtype != np.uint8 or zero.size != 1 or a_scale is None or a_scale.size != 1:
        return None
    checked = [w for w in weights if w is not None]
    if len(checked) != len(weights) or any(
            w.ndim != 2 or w.dtype != checked[0].dtype or w.shape != checked[0].shape for w in checked):
        return None
    width = checked[0].shape[1]
    scales = [view.const(m.input[3]) for m in mms]
    biases = [np.zeros(width, np.float32) if b is None else b for b in biases]
    if any(x is None or x.dtype != np.float32 or x.size not in (1, width) for x in (*scales, *biases)):
        return None
    if width != a.heads * (width // a.heads) or any(b.size != width for b in biases):  # type: ignore[union-attr]
        return None
    name = a.output
    inits = (
        numpy_helper.from_array(np.concatenate(checked, axis=1), f"{name}_qkv_weight"),
        numpy_helper.from_array(np.concatenate([b.ravel() for b in biases]), f"{name}_qkv_bias"),  # type: ignore
        numpy_helper.from_array(np.concatenate([np.broadcast_to(s.ravel(), (width,)) for s in scales]),  # type: ignore
                                f"{name}_qkv_scale"),
    )
    inputs = [first.input[0], inits[0].name, inits[1].name, first.input[2], inits[2].name, first.input[4]]
    return inputs, inits, tuple(n for f in found for n in f[2])  # type: ignore[index]


def _projection(name: str, view: GraphView) -> tuple[onnx.NodeProto, np.ndarray | None, tuple] | None:
    """``MatMulIntegerToFloat`` (its bias folded in, or added by the one ``Add`` reading it) that makes ``name``:
    (the node, the bias if a separate Add adds it, the nodes)."""
    node = view.producer.get(name)
    if node is not None and node.op_type == "MatMulIntegerToFloat" and node.domain == MS and len(node.input) >= 6:
        bias = view.const(node.input[6]) if len(node.input) > 6 and node.input[6] else None
        ok = len(node.input) <= 6 or not node.input[6] or bias is not None
        return (node, bias, (node,)) if ok else None
    add = view.made_by(name, "Add")
    for x, b in ((add.input[0], add.input[1]), (add.input[1], add.input[0])) if add is not None else ():
        mm, bias = view.producer.get(x), view.const(b)
        if mm is None or mm.op_type != "MatMulIntegerToFloat" or mm.domain != MS or bias is None or bias.ndim != 1:
            continue
        if len(mm.input) >= 6 and not (len(mm.input) > 6 and mm.input[6]) and view.only_reader(x, "Add"):
            return mm, bias, (mm, add)
    return None


def _key(node: onnx.NodeProto) -> tuple[str, ...]:
    return (node.op_type, *node.output)


def _keys(nodes: tuple[onnx.NodeProto, ...]) -> set[tuple[str, ...]]:
    return {_key(n) for n in nodes}


def _match_attention(softmax: onnx.NodeProto, view: GraphView, masks: KeyPaddingMasks) -> _Attention | None:
    """The attention core around ``softmax``, or None unless every piece is exactly as expected."""
    if _attr(softmax, "axis", -1) not in (-1, 3):
        return None
    add = view.made_by(softmax.input[0], "Add")
    if add is None:
        return None
    for scores, mask in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        scaled = _scaled_scores(scores, view)
        masked = (_padding_mask(mask, view) or masks(mask)) if scaled is not None else None
        if scaled is not None and masked is not None:
            break
    else:
        return None
    (qk, scale, scale_node), (mask_input, mask_value) = scaled, masked
    q, k = _split_heads(qk.input[0], HEAD_PERM, view), _split_heads(qk.input[1], KEY_PERM, view)
    ctx = view.only_reader(softmax.output[0], "MatMul")
    if q is None or k is None or ctx is None or ctx.input[0] != softmax.output[0]:
        return None
    v = _split_heads(ctx.input[1], HEAD_PERM, view)
    merged = _merge_heads(ctx.output[0], view)
    if v is None or merged is None or not q[1] == k[1] == v[1] or not q[3] == k[3] == v[3] == merged[2]:
        return None
    heads = q[1][0] or _heads((q[0], k[0], v[0]), q[1][1], q[3], view)  # N = 0: [X.shape[:2], -1, H]
    if not heads or merged[0] != (heads * q[1][1] if q[1][0] else -1):
        return None
    if any(view.only_reader(t, op) is None for t, op in ((qk.output[0], scale_node.op_type),
                                                        (scale_node.output[0], "Add"), (add.output[0], "Softmax"))):
        return None
    nodes = (*q[2], *k[2], *v[2], qk, scale_node, add, softmax, ctx, *merged[1])
    return _Attention(q[0], k[0], v[0], merged[1][-1].output[0], heads, scale, mask_input, mask_value, nodes)


def _scaled_scores(name: str, view: GraphView) -> tuple[onnx.NodeProto, float, onnx.NodeProto] | None:
    """``MatMul(q, k) / c`` or ``MatMul(q, k) * c``: the MatMul, the scale it amounts to, the scaling node."""
    node = view.made_by(name, "Div", "Mul")
    c = view.const(node.input[1]) if node is not None else None
    qk = view.made_by(node.input[0], "MatMul") if node is not None else None
    if node is None or qk is None or c is None or c.size != 1 or c.dtype != np.float32 or float(c.ravel()[0]) == 0:
        return None
    value = float(c.ravel()[0])
    return qk, (1.0 / value if node.op_type == "Div" else value), node


def _padding_mask(name: str, view: GraphView) -> tuple[str, float] | None:
    """``(1 - float(mask[:, None, None, :])) * c`` with ``c <= MIN_MASK_VALUE``: (the mask input, c)."""
    mul = view.made_by(name, "Mul")
    if mul is None:
        return None
    c, other = view.const(mul.input[1]), mul.input[0]
    if c is None:
        c, other = view.const(mul.input[0]), mul.input[1]
    sub = view.made_by(other, "Sub")
    one = view.const(sub.input[0]) if sub is not None else None
    if c is None or c.size != 1 or float(c.ravel()[0]) > MIN_MASK_VALUE or sub is None or one is None or one.size != 1:
        return None
    if float(one.ravel()[0]) != 1.0:
        return None
    chain: list[onnx.NodeProto] = []
    tensor = sub.input[1]
    while (node := view.made_by(tensor, "Unsqueeze", "Cast")) is not None:
        chain.append(node)
        tensor = node.input[0]
    source = view.inputs.get(tensor)
    if source is None or _unsqueezed(chain[::-1], len(source.type.tensor_type.shape.dim), view) != ["d", 1, 1, "d"]:
        return None
    return tensor, float(c.ravel()[0])


def _unsqueezed(chain: list[onnx.NodeProto], rank: int, view: GraphView) -> list[object] | None:
    """The shape pattern (``"d"`` for a data dimension) after ``chain`` of Unsqueeze and exactly one Cast to
    float, applied to a tensor of ``rank``; None if anything else is in the chain."""
    dims: list[object] = ["d"] * rank
    casts = [n for n in chain if n.op_type == "Cast"]
    if len(casts) != 1 or _attr(casts[0], "to") != onnx.TensorProto.FLOAT:
        return None
    for node in chain:
        if node.op_type == "Unsqueeze":
            axes = view.ints(node.input[1]) if len(node.input) > 1 else _int_list(node, "axes")
            if not axes:
                return None
            size = len(dims) + len(axes)
            for axis in sorted(a % size for a in axes):
                dims.insert(axis, 1)
    return dims


def _shape_dims(name: str, view: GraphView) -> list[int | str] | None:
    """A Reshape target: constants, or ``Concat`` of constants and ``Unsqueeze(Gather(Shape(t), i))`` pieces,
    which read as ``"i:t"`` (dimension i of tensor t)."""
    ints = view.ints(name)
    if ints is not None:
        return list(ints)
    concat = view.made_by(name, "Concat")
    if concat is None or _attr(concat, "axis") != 0:
        return None
    dims: list[int | str] = []
    for part in concat.input:
        ints = view.ints(part)
        if ints is not None:
            dims.extend(ints)
            continue
        unsq = view.made_by(part, "Unsqueeze")
        gather = view.made_by(unsq.input[0], "Gather") if unsq is not None else None
        shape = view.made_by(gather.input[0], "Shape") if gather is not None else None
        index = view.ints(gather.input[1]) if gather is not None else None
        axes = (view.ints(unsq.input[1]) if len(unsq.input) > 1 else _int_list(unsq, "axes")) if unsq else None
        if shape is None or index is None or len(index) != 1 or (axes or []) != [0] or len(shape.attribute):
            return None
        dims.append(f"{index[0]}:{shape.input[0]}")
    return dims


def _split_heads(name: str, perm: tuple[int, ...], view: GraphView) -> tuple[str, tuple[int, int], tuple, str] | None:
    """``Transpose(Reshape(x, [batch, -1, N, H]), perm)``: (x, (N, H), the two nodes, ""); or (transformers 5)
    ``Transpose(Reshape(x, [X.shape[0], X.shape[1], -1, H]), perm)``: (x, (0, H), the two nodes, X)."""
    t = view.made_by(name, "Transpose")
    r = view.made_by(t.input[0], "Reshape") if t is not None else None
    if t is None or r is None or tuple(_int_list(t, "perm")) != perm:
        return None
    if view.only_reader(r.output[0], "Transpose") is None:
        return None
    dims = _shape_dims(r.input[1], view)
    if dims is None or len(dims) != 4 or not isinstance(dims[3], int) or dims[3] < 1:
        return None
    source = str(dims[0])[2:]
    if source and dims[0] == f"0:{source}" and dims[1:3] == [f"1:{source}", -1]:
        return r.input[0], (0, dims[3]), (r, t), source
    if dims[1] != -1 or not isinstance(dims[2], int) or dims[2] < 1:
        return None
    if not (dims[0] == 0 and not _attr(r, "allowzero", 0)) and not str(dims[0]).startswith("0:"):
        return None
    return r.input[0], (dims[2], dims[3]), (r, t), ""


def _heads(tensors: tuple[str, ...], head_size: int, source: str, view: GraphView) -> int:
    """The head count of ``Reshape(x, [X.shape[0], X.shape[1], -1, head_size])`` for Q, K and V (X is
    ``source``): their width over ``head_size`` when all three are projections of X of one width, else 0."""
    widths = set()
    for name in tensors:
        found = _projection(name, view)
        mm = found[0] if found is not None else view.made_by(name, "MatMul")
        weight = view.const(mm.input[1]) if mm is not None else None
        if mm is None or weight is None or weight.ndim != 2 or not _fed_by(mm.input[0], source, view):
            return 0
        widths.add(int(weight.shape[1]))
    width = widths.pop() if len(widths) == 1 else 0
    return width // head_size if width % head_size == 0 else 0


def _fed_by(name: str, source: str, view: GraphView) -> bool:
    """True if ``name`` is ``source``, or made from it by at most four elementwise steps (smoothing Mul by a
    constant, QuantizeLinear, DequantizeLinear, Identity, Cast): it has the shape of ``source``."""
    for _ in range(5):
        if name == source:
            return True
        node = view.made_by(name, "QuantizeLinear", "DequantizeLinear", "Identity", "Cast", "Mul")
        if node is None or (node.op_type == "Mul" and view.const(node.input[1]) is None):
            return False
        name = node.input[0]
    return False


def _merge_heads(name: str, view: GraphView) -> tuple[int, tuple, str] | None:
    """``Reshape(Transpose(ctx, [0, 2, 1, 3]), [batch, seq, N * H])``: (N * H, the two nodes, ""); or
    (transformers 5) ``Reshape(..., [X.shape[0], X.shape[1], -1])``: (-1, the two nodes, X)."""
    t = view.only_reader(name, "Transpose")
    if t is None or tuple(_int_list(t, "perm")) != HEAD_PERM or t.output[0] in view.outputs:
        return None
    readers = view.readers.get(t.output[0], [])
    reshapes = [n for n in readers if n.op_type == "Reshape" and n.input[0] == t.output[0]]
    if len(reshapes) != 1 or any(n.op_type != "Shape" for n in readers if n is not reshapes[0]):
        return None
    r = reshapes[0]
    dims = _shape_dims(r.input[1], view)
    zero_copies = not _attr(r, "allowzero", 0)
    if dims is None or len(dims) != 3 or not isinstance(dims[2], int):
        return None
    source = str(dims[0])[2:]
    if source and source != t.output[0] and dims == [f"0:{source}", f"1:{source}", -1]:
        return -1, (t, r), source
    batch_ok = dims[0] == f"0:{t.output[0]}" or (dims[0] == 0 and zero_copies)
    seq_ok = dims[1] in (f"1:{t.output[0]}", -1) or (dims[1] == 0 and zero_copies)
    return (dims[2], (t, r), "") if batch_ok and seq_ok else None


def _replaceable(nodes: tuple[onnx.NodeProto, ...], output: str, view: GraphView) -> bool:
    """True if nothing outside the replaced nodes reads what they compute, except shape arithmetic that
    only feeds them (and dies with them)."""
    removed = {_key(n) for n in nodes}
    dead: dict[tuple[str, ...], bool] = {}

    def dies(node: onnx.NodeProto) -> bool:
        k = _key(node)
        if k in removed:
            return True
        if k not in dead:
            dead[k] = False  # cycle guard
            dead[k] = not any(o in view.outputs for o in node.output) and all(
                dies(r) for o in node.output for r in view.readers.get(o, []))
        return dead[k]

    inner = [o for n in nodes for o in n.output if o != output]
    return not any(o in view.outputs for o in inner) and all(dies(r) for o in inner for r in view.readers.get(o, []))
