"""SmoothQuant-style activation equalization for static int8.

Static quantization gives every activation one fixed scale, so a few outlier channels (BERT's
residual stream has them) crush the resolution of all the others. Equalization divides each input
channel j of a weight MatMul by s_j = amax_x(j)^alpha / amax_w(j)^(1-alpha) and multiplies row j of
the weight by s_j: the product is unchanged in exact arithmetic, the activation's range is flattened
and per-channel weight quantization absorbs the scaled rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgebert.errors import QuantizationError
from edgebert.runtime.engines import Engine, open_engine


def tap_session(model: onnx.ModelProto, tensors: Iterable[str]) -> Engine:
    """A one-thread, unoptimized engine of ``model`` that also outputs the named fp32 ``tensors``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in have:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return open_engine(probe.SerializeToString(), threads=1, optimization="disable")


def real_rows(value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The values of ``value`` at real-token positions, for the layouts of a BERT graph: [batch, sequence,
    ...], [batch * sequence, ...], and the attention layouts [batch, heads, sequence, x] and [batch, heads,
    x, sequence] (rows of real queries / columns of real keys). Any other tensor (e.g. a pooled [batch,
    hidden] head input) is real everywhere and kept whole."""
    batch, seq = mask.shape
    if value.ndim >= 3 and value.shape[:2] == mask.shape:
        return value[mask]
    if value.ndim == 2 and seq > 1 and value.shape[0] == mask.size:
        return value[mask.reshape(-1)]
    if value.ndim == 4 and value.shape[0] == batch:
        for axis in (2, 3):
            if value.shape[axis] == seq:
                return np.moveaxis(value, axis, 1)[mask]
    return value


def channel_absmax(
    model: onnx.ModelProto, tensors: list[str], batches: Iterable[Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per last-axis channel max |x| of ``tensors`` over real (unpadded) tokens of ``batches``."""
    engine = tap_session(model, tensors)
    out: dict[str, np.ndarray] = {}
    for feeds in batches:
        values = engine.run(feeds, tensors)
        mask = np.asarray(feeds["attention_mask"]).astype(bool)
        for name in tensors:
            v = values[name]
            m = np.abs(real_rows(v, mask).reshape(-1, v.shape[-1])).max(axis=0)
            out[name] = np.maximum(out[name], m) if name in out else m
    return out


def smooth(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    alpha: float = 0.5,
    nodes: Iterable[str] | None = None,
    cap: float | None = None,
) -> tuple[onnx.ModelProto, int]:
    """Equalize the inputs of the weight MatMuls (all, or ``nodes``); returns (new model, tensors smoothed).

    ``cap``: after equalization no channel's range may exceed ``cap`` times the median channel's
    (the few channels above it are divided further; their weight rows absorb the factor).
    """
    inits = {i.name: i for i in model.graph.initializer}
    consumers = _weight_consumers(model, nodes)
    if not consumers:
        return model, 0
    amax = channel_absmax(model, list(consumers), batches)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {n.name: n for n in out.graph.node}
    muls: list[tuple[str, onnx.NodeProto]] = []
    done = 0
    for tensor, readers in consumers.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in readers]
        w_max = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        if amax[tensor].shape != w_max.shape:
            continue
        s = _scales(amax[tensor], w_max, alpha, cap)
        if _fold_into_value(out, tensor, (1.0 / s).astype(np.float32)):
            smoothed = tensor  # attention context: 1/s folded into the value projection, no Mul
        else:
            inv_name, smoothed = f"{tensor}_smooth_inv", f"{tensor}_smoothed"
            out.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv_name))
            muls.append((tensor, helper.make_node("Mul", [tensor, inv_name], [smoothed], name=f"{smoothed}_Mul")))
        for n in readers:
            node = by_name[n.name]
            node.input[0] = smoothed
            scaled = f"{n.input[1]}_smoothed"
            w = _current(out, node.input[1]) * s[:, None]
            out.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), scaled))
            node.input[1] = scaled
        done += 1
    _insert_after_producers(out, muls)
    _drop_unread_initializers(out)
    return out, done


def _weight_consumers(model: onnx.ModelProto, nodes: Iterable[str] | None) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor -> the chosen weight MatMuls (2-d weights) that read it."""
    inits = {i.name: i for i in model.graph.initializer}
    chosen = set(nodes) if nodes is not None else None
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        weight = inits.get(n.input[1]) if n.op_type == "MatMul" else None
        if weight is not None and len(weight.dims) == 2 and (chosen is None or n.name in chosen):
            consumers.setdefault(n.input[0], []).append(n)
    return consumers


def _scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float, cap: float | None) -> np.ndarray:
    """s_j = amax_x(j)^alpha / amax_w(j)^(1-alpha), raised where a channel would exceed ``cap`` medians."""
    s = np.power(np.maximum(x_max, 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1.0 - alpha)
    if cap is not None:
        ranges = np.maximum(x_max, 1e-5) / s
        s = np.maximum(s, np.maximum(x_max, 1e-5) / (cap * float(np.median(ranges))))
    return np.clip(s, 1e-3, 1e3).astype(np.float32)


def _insert_after_producers(model: onnx.ModelProto, muls: list[tuple[str, onnx.NodeProto]]) -> None:
    """Insert each Mul right after the node that produces its input (keeps topological order)."""
    producers = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    ordered = list(model.graph.node)
    for tensor, mul in sorted(muls, key=lambda t: -producers.get(t[0], -1)):
        ordered.insert(producers.get(tensor, -1) + 1, mul)
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def _drop_unread_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _current(model: onnx.ModelProto, name: str) -> np.ndarray:
    for init in reversed(model.graph.initializer):
        if init.name == name:
            return numpy_helper.to_array(init).astype(np.float32)
    raise QuantizationError(f"equalization: the graph has no initializer {name!r} (an internal error; report it).")


def _fold_into_value(model: onnx.ModelProto, tensor: str, inv: np.ndarray) -> bool:
    """Scale channel j of ``tensor`` by ``inv[j]`` inside the value projection, if ``tensor`` is an
    attention context: Reshape/Transpose(MatMul(probs, Reshape/Transpose(x @ Wv + bv))).

    The context is linear in V per channel, so scaling Wv's columns and bv is exact.
    """
    g = model.graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        if n.op_type == "Shape":  # reads only the shape, which the scaling does not change
            continue
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1

    def skip_layout(name: str) -> str:
        while name in producer and producer[name].op_type in ("Reshape", "Transpose") and readers.get(name, 0) == 1:
            name = producer[name].input[0]
        return name

    ctx = producer.get(skip_layout(tensor))
    if ctx is None or ctx.op_type != "MatMul" or ctx.input[1] in inits:
        return False
    cur = skip_layout(ctx.input[1])
    node = producer.get(cur)
    bias = None
    if node is not None and node.op_type == "Add" and readers.get(cur, 0) == 1:
        consts = [i for i in node.input if i in inits]
        if len(consts) != 1:
            return False
        bias = consts[0]
        cur = next(i for i in node.input if i not in inits)
        node = producer.get(cur)
    if node is None or node.op_type != "MatMul" or node.input[1] not in inits or readers.get(cur, 0) != 1:
        return False
    w = _current(model, node.input[1])
    if w.ndim != 2 or w.shape[1] != inv.shape[0]:
        return False
    name = f"{node.input[1]}_vfold"
    g.initializer.append(numpy_helper.from_array((w * inv[None, :]).astype(np.float32), name))
    node.input[1] = name
    if bias is not None:
        b = _current(model, bias)
        if b.shape != inv.shape:
            return False
        g.initializer.append(numpy_helper.from_array((b * inv).astype(np.float32), f"{bias}_vfold"))
        for n in g.node:
            n.input[:] = [f"{bias}_vfold" if i == bias else i for i in n.input]
    return True
