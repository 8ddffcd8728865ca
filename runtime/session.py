"""ONNX Runtime sessions on CPU: thread count from what this process may really use."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgebert.errors import BundleError, EdgebertError

from .safety import check_model


def available_cpus() -> int:
    """CPUs this process may use: scheduler affinity, capped by a cgroup CPU quota when one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota() -> float | None:
    # cgroup v2: "max 100000" or "200000 100000"
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    # cgroup v1
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if q > 0 and p > 0:
            return q / p
    except (OSError, ValueError):
        pass
    return None


def create_session(
    model_path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    graph_optimization: str = "all",
    check: bool = True,
) -> ort.InferenceSession:
    """An ``InferenceSession`` on the CPU provider with a fixed intra-op thread count.

    ``threads=None`` uses :func:`available_cpus`. ``graph_optimization`` is one of
    ``"disable"``, ``"basic"``, ``"extended"``, ``"all"``. ``check`` first runs
    :func:`edgebert.runtime.safety.check_model` (size cap, external-data paths, declared tensor
    sizes), so that a hostile file is refused before ONNX Runtime parses or allocates anything.
    """
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if graph_optimization not in levels:
        raise EdgebertError(f"graph_optimization={graph_optimization!r}; choose one of {', '.join(levels)}.")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise EdgebertError(f"threads={threads!r}; give a positive integer or None for all available CPUs.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or available_cpus()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[graph_optimization]
    opts.log_severity_level = 3
    # External data must stay inside the model's directory (ORT resolves it relative to the model).
    if check:
        check_model(model_path)
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise BundleError(
            f"{model_path}: ONNX Runtime cannot load this model ({type(e).__name__}: {_first_line(e)}). "
            "The file is corrupt or was produced for another runtime; re-export the bundle."
        ) from e


def run_session(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
) -> list[Any]:
    """``session.run`` with onnxruntime's exceptions turned into an :class:`EdgebertError`."""
    try:
        return session.run(outputs, feeds)
    except Exception as e:
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        raise EdgebertError(
            f"ONNX Runtime failed to run the model on inputs {shapes} ({type(e).__name__}: {_first_line(e)}). "
            "Check that the bundle matches its manifest (`edgebert verify BUNDLE`)."
        ) from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""
