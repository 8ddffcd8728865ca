"""The OpenVINO engine (CPU plugin): optional, installed with ``pip install "edgebert[openvino]"``.

It opens what ONNX Runtime opens (an ONNX file, or a serialized ONNX graph in memory: OpenVINO's ONNX
frontend reads both, ORT's fused com.microsoft ops included) and also an OpenVINO IR (``model.xml``
with ``model.bin`` beside it). It compiles for the CPU at a fixed thread count in latency mode (one
stream) with the compute precision set explicitly: left alone, OpenVINO picks bf16 by itself on CPUs
that have it, and silently falls back to fp32 when asked for bf16 on a CPU that lacks it.

Thread safety: a compiled model may be shared, an ``InferRequest`` may not. Each
:meth:`OpenVinoEngine.run` takes an idle request from the engine's pool (or creates one when every
pooled request is busy in another thread) and gives it back afterwards, so a pipeline may be shared
between threads as with ONNX Runtime. A request owns its intermediate and output buffers: a new one per
call pays their allocation and first touch every time, which cost 11% at 1x16 and 7% at 1x128 on
MiniLM int8 (AVX512 Zen 5, 2026-12-01, interleaved with other models as in ``edgebert bench``). A pooled
request keeps its buffers for the largest shape it ran, like ONNX Runtime's memory arena; a call whose
outputs exceed :data:`KEEP_REQUEST_BYTES` (a masked LM's logits over a big batch: 250 MB for 32x64 with
a 30k vocabulary) drops its request instead, so that memory returns after the call. Requests on one
compiled model share its single stream, OpenVINO's unit of parallel execution.

ENABLE_CPU_PINNING and ENABLE_HYPER_THREADING are left at OpenVINO's defaults: on a 2-vCPU AMD EPYC VM
neither changed 1-thread latency beyond the noise (hyper-threads are not exposed there), nor did pinning
change the throughput of two 1-thread engines running side by side.

Attention's key transpose: exporters write K^T as one Transpose with order (0, 2, 3, 1), from (batch, seq,
heads, dim) to (batch, heads, dim, seq). OpenVINO's CPU plugin runs it as a node of its own (int8 after
NNCF). :func:`split_key_transposes` rewrites it as (0, 2, 1, 3) then (0, 1, 3, 2), which the plugin folds
into its attention kernel and into the MatMul's ``transpose_b``: the same arithmetic (bit-identical
outputs, tested), and on BERT-base int8 (``openvino-mixed``, 1 thread, Zen 5 VM, 2026-12-01, interleaved)
1x128 28.9 -> 28.4 ms and 8x128 205.8 -> 201.4 ms. With MiniLM's 32-wide heads the (0, 2, 1, 3) half stays
a node of its own and the time is unchanged (4.46 vs 4.42 ms at 1x128 in a PERF_COUNT profile).

``optimization`` (ONNX Runtime's graph optimization level) has no OpenVINO equivalent: OpenVINO always
applies its own graph transformations when it compiles. It is accepted and ignored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BundleError, ConfigError, DependencyError, EngineError

from ..cpus import available_cpus
from ..safety import check_file_size, check_model, max_model_bytes
from . import check_precision, first_line

try:
    import openvino as ov
except ImportError as e:  # the optional extra is not installed
    raise DependencyError(
        f'engine="openvino" needs the openvino package ({e}); install it with pip install "edgebert[openvino]".'
    ) from e

_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # edgebert name -> INFERENCE_PRECISION_HINT
KEEP_REQUEST_BYTES = 16 << 20  # a request whose outputs were larger is not pooled (see the module's docstring)
_SINK = "/sink_port_0"  # the ONNX frontend names each Result "<graph output name>/sink_port_0"


class OpenVinoEngine:
    """An OpenVINO model compiled for the CPU, one stream, fixed threads and precision.

    ``compiled`` is the ``openvino.CompiledModel`` itself, for tools that need OpenVINO-specific
    features; everything else goes through :meth:`run`. ``threads`` is the thread count OpenVINO
    compiled with (it caps a request at the CPUs it may use); ``precision`` is "fp32" or "bf16".
    """

    name = "openvino"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        threads: int | None = None,
        optimization: str = "all",
        check: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.precision = check_precision(precision)
        core = ov.Core()
        if precision == "bf16":
            require_bf16(core)
        ov_model = _read(core, model, check)
        config = {
            "INFERENCE_NUM_THREADS": threads or available_cpus(),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _PRECISIONS[precision],
        }
        try:
            self.input_names = tuple(p.get_any_name() for p in ov_model.inputs)
            self._inputs = {  # name -> (numpy dtype, rank) that run() accepts
                p.get_any_name(): (np.dtype(p.get_element_type().to_dtype()), p.get_partial_shape().rank.get_length())
                for p in ov_model.inputs
            }
            self.output_names = tuple(_output_name(p) for p in ov_model.outputs)
            self._widths = {n: _last_dim(p) for n, p in zip(self.output_names, ov_model.outputs, strict=True)}
            self.compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as e:  # openvino raises RuntimeError/OVError with the plugin's message
            raise BundleError(
                f"{_where(model)}: OpenVINO cannot compile this model ({type(e).__name__}: {first_line(e)}). "
                "The graph uses an operator OpenVINO lacks, or the file is corrupt; re-export the bundle."
            ) from e
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self._index = {n: i for i, n in enumerate(self.output_names)}
        self._idle: list[Any] = []  # pooled InferRequests, each used by one call at a time
        self._lock = threading.Lock()

    def output_width(self, name: str) -> int | None:
        return self._widths.get(name)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs is not None else list(self.output_names)
        arrays = self._check(feeds, names)
        with self._lock:
            request = self._idle.pop() if self._idle else None
        if request is None:  # every pooled request is busy (or none was made yet)
            request = self.compiled.create_infer_request()
        try:
            for i, name in enumerate(self.input_names):  # zero-copy: OpenVINO reads the numpy memory in place
                request.set_input_tensor(i, ov.Tensor(arrays[name], shared_memory=True))
            request.infer()
            # the request's output buffers belong to OpenVINO: copy them out
            out = {n: np.array(request.get_output_tensor(self._index[n]).data, np.float32) for n in names}
        except Exception as e:
            raise EngineError(
                f"OpenVINO failed to run the model on inputs {_shapes(feeds)} ({type(e).__name__}: {first_line(e)}). "
                "Check that the bundle matches its manifest (`edgebert verify BUNDLE`)."
            ) from e
        if sum(request.get_output_tensor(i).byte_size for i in range(len(self.output_names))) <= KEEP_REQUEST_BYTES:
            with self._lock:
                self._idle.append(request)
        return out

    def _check(self, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        """The feeds as C-contiguous writable arrays (what OpenVINO can share), after refusing what ONNX
        Runtime refuses and OpenVINO would not: unknown names, other dtypes or ranks, and inputs of
        different shapes (OpenVINO casts a float array silently, and runs a mask shorter than the ids)."""
        arrays = {k: np.asarray(v) for k, v in feeds.items()}
        problem = ""
        if set(arrays) != set(self._inputs):
            problem = f"the graph takes inputs {list(self.input_names)}"
        elif any(n not in self._index for n in names):
            problem = f"the graph's outputs are {list(self.output_names)}, not {list(names)}"
        elif any((a.dtype, a.ndim) != self._inputs[k] for k, a in arrays.items()):
            problem = "the graph takes " + ", ".join(f"{k}: {d} of rank {r}" for k, (d, r) in self._inputs.items())
        elif len({a.shape for a in arrays.values()}) > 1:
            problem = "its inputs must all have the same shape (batch, sequence)"
        if problem:
            raise EngineError(f"OpenVINO cannot run the model on inputs {_shapes(feeds)}: {problem}.")
        shareable = {k: a.flags.c_contiguous and a.flags.writeable for k, a in arrays.items()}
        return {k: a if shareable[k] else np.array(a, order="C") for k, a in arrays.items()}

    def __repr__(self) -> str:
        return (
            f"OpenVinoEngine(threads={self.threads}, precision={self.precision!r}, "
            f"inputs={list(self.input_names)}, outputs={list(self.output_names)})"
        )


def require_bf16(core: Any = None) -> None:
    """A ConfigError unless OpenVINO reports bf16 arithmetic on this CPU (it would silently run fp32)."""
    caps = (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        raise ConfigError(f"precision='bf16': this CPU has no bf16 support (OpenVINO's CPU capabilities: "
                          f"{', '.join(caps)}); use precision='fp32'.")


def _shapes(feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(np.shape(v)) for k, v in feeds.items()}


def _where(model: str | os.PathLike[str] | bytes) -> str:
    return "the in-memory graph" if isinstance(model, bytes) else str(model)


def _read(core: Any, model: str | os.PathLike[str] | bytes, check: bool) -> Any:
    """The ``openvino.Model`` of an ONNX file, an IR ``.xml`` (``.bin`` beside it) or ONNX bytes."""
    if isinstance(model, bytes):
        source: Any = model  # the ONNX frontend reads a serialized graph from memory, no temporary file
    else:
        path = Path(model)
        if check and path.suffix.lower() == ".xml":
            _check_ir(path)
        elif check:
            check_model(path)  # refuse a hostile file before OpenVINO parses or allocates anything
        source = str(path)
    try:
        return split_key_transposes(core.read_model(source))
    except Exception as e:
        raise BundleError(
            f"{_where(model)}: OpenVINO cannot read this model ({type(e).__name__}: {_why(e)}). The graph uses "
            "operators OpenVINO cannot convert (ONNX Runtime's int8 ones), or the file is corrupt or is neither "
            "ONNX nor OpenVINO IR; run it on ONNX Runtime, or re-export the bundle."
        ) from e


def split_key_transposes(model: Any) -> Any:
    """``model`` with every Transpose of order (0, 2, 3, 1) that feeds only MatMuls split in two (see the
    module's docstring); the model is changed in place and returned."""
    from openvino import opset13

    changed = False
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Transpose" or not _is_key_transpose(node):
            continue
        heads_first = opset13.transpose(node.input_value(0), np.array([0, 2, 1, 3], np.int64))
        swapped = opset13.transpose(heads_first, np.array([0, 1, 3, 2], np.int64))
        swapped.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(swapped.output(0))
        changed = True
    if changed:
        model.validate_nodes_and_infer_types()
    return model


def _is_key_transpose(node: Any) -> bool:
    order = node.input_value(1).get_node()
    if order.get_type_name() != "Constant" or [int(v) for v in order.get_data().ravel()] != [0, 2, 3, 1]:
        return False
    users = node.output(0).get_target_inputs()
    return bool(users) and all(u.get_node().get_type_name() == "MatMul" for u in users)


def _why(e: BaseException) -> str:
    """OpenVINO's own summary of what failed (its first line is only a source location)."""
    lines = [line.strip("- ").strip() for line in str(e).splitlines()]
    summary = [line for line in lines if line.startswith(("No conversion rule", "Conversion is failed"))]
    return "; ".join(summary)[:300] if summary else first_line(e)


def _check_ir(xml: Path) -> None:
    """An IR's two files exist, are regular files and fit the model cap together."""
    cap = max_model_bytes()
    how = "Raise the cap with EDGEBERT_MAX_MODEL_BYTES if the model is really this large."
    total = 0
    for path in (xml, xml.with_suffix(".bin")):
        if not path.is_file():
            raise BundleError(f"{path}: the OpenVINO IR file is missing or not a regular file; re-export it.")
        total += check_file_size(path, cap, "the OpenVINO IR", how)
    if total > cap:
        raise BundleError(f"{xml}: the OpenVINO IR is {total:,} bytes, more than the limit of {cap:,}. {how}")


def _output_name(port: Any) -> str:
    """The graph output's own name (after compilation a port also carries its producer's tensor names)."""
    names = port.get_names()
    sink = port.get_node().get_friendly_name().removesuffix(_SINK)
    if sink in names:
        return str(sink)
    return str(port.get_any_name())


def _last_dim(port: Any) -> int | None:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or len(shape) == 0 or shape[len(shape) - 1].is_dynamic:
        return None
    return int(shape[len(shape) - 1].get_length())
