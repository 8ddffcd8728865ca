"""A numeric test that an attention mask added to the scores is exactly a key-padding mask.

:mod:`.fuse_int8` recognises transformers 4.x's ``(1 - mask[:, None, None, :]) * c`` by its structure.
transformers 5 (``masking_utils.create_bidirectional_mask``) builds the same mask from Range, Expand, And,
Equal, Where, ... and other exporters will build it other ways again. Instead of pattern-matching each,
:class:`KeyPaddingMasks` cuts out the subgraph that computes the mask tensor, runs it alone (batches 1-3,
lengths 1 to 130, right-padded and arbitrary 0/1 masks) and accepts it only if every result is 0 at the
real keys and one constant c <= :data:`MIN_MASK_VALUE` at the padded keys, for every head and query. A
causal, sliding-window or query-padding mask fails that test, and its layers are left alone.

What the subgraph may hold: its values depend on exactly one graph input (the 0/1 mask, the ``source``),
on constants (Constant nodes, initializers of at most one dimension) and on *shapes* of other tensors (read
through Shape or Size), nothing else: no weights, no other input's values, no operator in
:data:`FORBIDDEN`, no other domain than standard ONNX. A tensor whose shape alone is read (transformers 5
reads the shape of the embeddings' output) becomes a *stub*: a zero tensor made by ConstantOfShape. Its
shape is measured once by running what computes it at two small (batch, length) sizes, and must be made of
the batch size, the length and constants.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper

from edgebert.errors import BundleError, EngineError
from edgebert.runtime.engines import open_engine

from .graph import GraphView

MIN_MASK_VALUE = -1e4  # an additive mask at least this negative removes a key from the softmax
SEQ_LENGTHS = (1, 2, 7, 33, 130)  # 130: longer than a 128-token sliding window (ModernBERT local attention)
BATCHES = (1, 2, 3)
PROBES = ((2, 3), (3, 5))  # (batch, length): tells batch, length and constant dimensions apart
SHAPE_OPS = frozenset({"Shape", "Size"})
FORBIDDEN = frozenset({
    "MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "Conv", "ConvInteger", "QLinearConv", "ConvTranspose",
    "Einsum", "If", "Loop", "Scan", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Multinomial", "Bernoulli", "Dropout",
})
Reads = dict[str, frozenset[str] | None]
Dims = list[int | str]  # "B" (batch), "S" (length) or a constant


class KeyPaddingMasks:
    """``masks(tensor)``: (the 0/1 mask graph input, c) when ``tensor`` is exactly the additive key-padding
    mask of that input, else None. The test runs once per distinct tensor (the layers share one mask)."""

    def __init__(self, model: onnx.ModelProto, view: GraphView) -> None:
        self.model, self.view = model, view
        self._reads: Reads | None = None
        self._found: dict[str, tuple[str, float] | None] = {}

    def __call__(self, tensor: str) -> tuple[str, float] | None:
        if tensor not in self._found:
            if self._reads is None:
                self._reads = value_reads(self.model.graph, self.view)
            self._found[tensor] = recognize(self.model, self.view, tensor, self._reads)
        return self._found[tensor]


def recognize(model: onnx.ModelProto, view: GraphView, tensor: str, reads: Reads) -> tuple[str, float] | None:
    """(source, c) if the subgraph computing ``tensor`` passes the test of the module, else None."""
    sources = reads.get(tensor)
    if sources is None or len(sources) != 1:
        return None
    source = next(iter(sources))
    if len(view.inputs[source].type.tensor_type.shape.dim) != 2:
        return None
    nodes, stubs = _subgraph(model.graph, tensor, source, reads, view)
    dims = _stub_dims(model, view, source, stubs) if stubs else {}
    if dims is None:
        return None
    inits = sorted({i for n in nodes for i in n.input if i in view.inits})
    graph = helper.make_graph(
        [*(helper.make_node("ConstantOfShape", [f"{x}::shape"], [x]) for x in stubs), *nodes], "mask",
        [view.inputs[source], *(helper.make_tensor_value_info(f"{x}::shape", onnx.TensorProto.INT64, [len(d)])
                                for x, d in dims.items())],
        [helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)], [view.inits[i] for i in inits])
    mask_model = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    c = _run_trials(mask_model.SerializeToString(), source, _np_type(view, source), dims)
    return None if c is None else (source, c)


def value_reads(g: onnx.GraphProto, view: GraphView) -> Reads:
    """For each tensor, the graph inputs its values depend on (a shape read through Shape or Size does not
    count); None when it depends on a weight or on an operator this module refuses."""
    reads: Reads = {name: frozenset({name}) for name in view.inputs if name not in view.inits}
    reads.update({name: None if _is_weight(t) else frozenset() for name, t in view.consts.items()})
    for node in g.node:
        if _refused(node):
            found: frozenset[str] | None = None
        elif node.op_type in SHAPE_OPS:
            found = frozenset()
        else:
            parts = [reads.get(i) for i in node.input if i]  # not yet computed (unsorted graph): None
            found = None if any(p is None for p in parts) else frozenset().union(*parts)  # type: ignore[arg-type]
        for o in node.output:
            reads.setdefault(o, found)
    return reads


def _is_weight(t: onnx.TensorProto) -> bool:
    return len(t.dims) >= 2 and int(np.prod(t.dims)) > 1


def _refused(node: onnx.NodeProto) -> bool:
    return (node.domain not in ("", "ai.onnx") or node.op_type in FORBIDDEN
            or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute))


def _subgraph(g: onnx.GraphProto, tensor: str, source: str, reads: Reads,
              view: GraphView) -> tuple[list[onnx.NodeProto], list[str]]:
    """The nodes (in graph order) that compute ``tensor`` from ``source``, constants and stubs, and the stubs:
    the tensors read only by Shape or Size whose values depend on something else than ``source``."""
    wanted: set[tuple[str, ...]] = set()
    stubs: list[str] = []
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        if t in seen or t == source or t in view.inits:
            continue
        seen.add(t)
        node = view.producer[t]
        wanted.add((node.op_type, *node.output))
        for i in filter(None, node.input):
            clean = reads.get(i) is not None and reads[i] <= {source}  # type: ignore[operator]
            if node.op_type in SHAPE_OPS and not clean:
                stubs += [] if i in stubs else [i]
            else:
                todo.append(i)
    return [n for n in g.node if (n.op_type, *n.output) in wanted], stubs


def _upstream(targets: list[str], view: GraphView) -> list[onnx.NodeProto] | None:
    """The nodes that compute ``targets`` from graph inputs and initializers; None if one is refused."""
    nodes: dict[tuple[str, ...], onnx.NodeProto] = {}
    todo, seen = list(targets), set()
    while todo:
        t = todo.pop()
        if t in seen or t in view.inputs or t in view.inits:
            continue
        seen.add(t)
        node = view.producer.get(t)
        if node is None or _refused(node):
            return None
        nodes[(node.op_type, *node.output)] = node
        todo.extend(filter(None, node.input))
    return list(nodes.values())


def _stub_dims(model: onnx.ModelProto, view: GraphView, source: str, stubs: list[str]) -> dict[str, Dims] | None:
    """Each stub's shape as batch ("B"), length ("S") and constant dimensions, measured at the PROBES sizes;
    None if that cannot be run or a dimension is anything else."""
    found = _upstream(stubs, view)
    if found is None:
        return None
    order = {(n.op_type, *n.output): k for k, n in enumerate(model.graph.node)}
    nodes = sorted(found, key=lambda n: order[(n.op_type, *n.output)])
    inputs = sorted({i for n in nodes for i in n.input if i in view.inputs and i not in view.inits}
                    | {x for x in stubs if x in view.inputs and x not in view.inits})
    inits = sorted({i for n in nodes for i in n.input if i in view.inits} | {x for x in stubs if x in view.inits})
    graph = helper.make_graph(
        [*nodes, *(helper.make_node("Shape", [x], [f"{x}::shape"]) for x in stubs)], "probe",
        [view.inputs[i] for i in inputs],
        [helper.make_tensor_value_info(f"{x}::shape", onnx.TensorProto.INT64, None) for x in stubs],
        [view.inits[i] for i in inits])
    probe = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    try:
        engine = open_engine(probe.SerializeToString(), threads=1)
        runs = [engine.run(feeds) for feeds in (_probe_feeds(view, source, inputs, nodes, b, s) for b, s in PROBES)]
    except (BundleError, EngineError, _Unknown):
        return None
    dims: dict[str, Dims] = {}
    for x in stubs:
        first, second = (r[f"{x}::shape"].tolist() for r in runs)
        named = [_dim_name(a, b) for a, b in zip(first, second, strict=False)]
        if len(first) != len(second) or any(d is None for d in named):
            return None
        dims[x] = named  # type: ignore[assignment]
    return dims


def _dim_name(first: int, second: int) -> int | str | None:
    """One dimension measured at the two PROBES sizes: "B", "S", a constant, or None (something else)."""
    (b1, s1), (b2, s2) = PROBES
    if first == second:
        return first
    return "B" if (first, second) == (b1, b2) else "S" if (first, second) == (s1, s2) else None


class _Unknown(Exception):
    """An input of a shape or type the probe cannot make up (caught in this module)."""


def _probe_feeds(view: GraphView, source: str, inputs: list[str], nodes: list[onnx.NodeProto], batch: int,
                 length: int) -> dict[str, np.ndarray]:
    """Inputs of the probe at (batch, length): the 0/1 mask all ones, token ids below every table they index."""
    rng = np.random.default_rng(length)
    names = [d.dim_param for d in view.inputs[source].type.tensor_type.shape.dim]
    feeds: dict[str, np.ndarray] = {}
    for name in inputs:
        shape = [{names[0]: batch, names[1]: length}.get(d.dim_param, d.dim_value) if d.dim_param else d.dim_value
                 for d in view.inputs[name].type.tensor_type.shape.dim]
        dtype = _np_type(view, name)
        if any(not isinstance(d, int) or d < 1 for d in shape) or dtype is None:
            raise _Unknown(name)
        tables = [view.inits[n.input[0]].dims[0] for n in nodes
                  if n.op_type == "Gather" and n.input[1] == name and n.input[0] in view.inits]
        if name == source or dtype == np.bool_:
            feeds[name] = np.ones(shape, dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, min(tables, default=2), size=shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _np_type(view: GraphView, name: str) -> type | None:
    elem = view.inputs[name].type.tensor_type.elem_type
    try:
        return helper.tensor_dtype_to_np_dtype(elem).type
    except KeyError:
        return None


def trial_masks(seed: int = 0) -> Iterator[np.ndarray]:
    """0/1 masks of every BATCHES x SEQ_LENGTHS shape, right-padded and arbitrary, each row with a real token."""
    rng = np.random.default_rng(seed)
    for length in SEQ_LENGTHS:
        for batch in BATCHES:
            lengths = rng.integers(1, length + 1, size=batch)
            yield (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
            arbitrary = rng.random((batch, length)) < 0.5
            arbitrary[np.arange(batch), rng.integers(0, length, size=batch)] = True
            yield arbitrary.astype(np.int64)


def _run_trials(model: bytes, source: str, dtype: type | None, dims: dict[str, Dims]) -> float | None:
    """c if the mask model gives the key-padding mask of every trial mask (one c for all), else None."""
    if dtype is None:
        return None
    values: set[float] = set()
    try:
        engine = open_engine(model, threads=1)
        for mask in trial_masks():
            batch, length = mask.shape
            feeds = {source: mask.astype(dtype), **{
                f"{x}::shape": np.array([batch if d == "B" else length if d == "S" else d for d in ds], np.int64)
                for x, ds in dims.items()}}
            found = padding_values(next(iter(engine.run(feeds).values())), mask)
            if found is None:
                return None
            values |= found
    except (BundleError, EngineError):
        return None
    c = values.pop() if len(values) == 1 else 0.0
    return c if np.isfinite(c) and c <= MIN_MASK_VALUE else None


def padding_values(result: np.ndarray, mask: np.ndarray) -> set[float] | None:
    """The values ``result`` holds at padded keys, if it is [B, 1, 1 or S, S] float32, 0 wherever the key is
    real (``mask[b, k] != 0``) and constant over heads and queries; else None."""
    batch, length = mask.shape
    if result.dtype != np.float32 or result.shape[:2] != (batch, 1) or result.ndim != 4:
        return None
    if result.shape[2] not in (1, length) or result.shape[3] != length:
        return None
    real = np.broadcast_to(mask[:, None, None, :] != 0, result.shape)
    if not (result[real] == 0).all():
        return None
    return {float(v) for v in np.unique(result[~real])}
