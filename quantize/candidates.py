"""The candidates ``edgebert optimize`` measures: one engine x precision each, built once into a work dir.

| name              | engine      | what                                                                 |
|-------------------|-------------|----------------------------------------------------------------------|
| onnxruntime-fp32  | onnxruntime | the bundle's fp32 graph (the reference)                              |
| onnxruntime-int8  | onnxruntime | edgebert's static int8 (``quantize_model`` default recipe)           |
| onnxruntime-mixed | onnxruntime | int8 with the most sensitive MatMuls in fp32 until the budget is met |
| openvino-fp32     | openvino    | the fp32 graph as OpenVINO IR                                        |
| openvino-bf16     | openvino    | the same IR run with bf16 arithmetic (CPUs with bf16 only)           |
| openvino-int8     | openvino    | NNCF post-training int8 for OpenVINO (transformer mode)              |
| openvino-mixed    | openvino    | NNCF int8 with symmetric activations, everything not int8 run in     |
|                   |             | bf16; the fastest of ``MIXED_STEPS`` that meets the budget (without  |
|                   |             | SmoothQuant; with it; layer 0's FFN down-projection also in bf16)    |

ONNX Runtime's CPU provider has no bf16 arithmetic, so there is no onnxruntime-bf16.

A candidate that cannot be built here is kept with the reason (engine not installed, no bf16 on this
CPU, no variant meets the budget) so that the decision table shows every row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgebert.errors import ConfigError, DependencyError, QuantizationError
from edgebert.runtime.artifacts import compute_precision
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.manifest import MODEL_FILE, Manifest

from . import graph, openvino_ptq
from .api import quantize_model

ENGINE_NAMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8", "mixed")
Feeds = Mapping[str, np.ndarray]


@dataclass
class Candidate:
    """One engine x precision: its artifact (a graph file) or why it was skipped."""

    name: str
    engine: str
    precision: str
    path: Path | None = None
    skipped: str | None = None
    manifest: Manifest | None = None  # onnxruntime int8/mixed: the bundle the quantizer wrote
    detail: dict[str, Any] = field(default_factory=dict)  # recipe choices, shown in the decision table

    def open(self, threads: int) -> Engine:
        if self.path is None:
            raise QuantizationError(f"candidate {self.name} was not built ({self.skipped}).")
        hint = compute_precision(self.engine, self.precision)
        return open_engine(self.path, engine=self.engine, threads=threads, precision=hint)


@dataclass(frozen=True)
class Plan:
    """What every builder needs: the fp32 bundle, the texts and the budget, and where to build."""

    bundle: Path
    work: Path
    calibration: Any  # as quantize_model takes it (None: the packaged set)
    eval_data: Any
    calibration_feeds: Sequence[Feeds]
    budget: Mapping[str, float]  # {"min_cosine": ...} or {"max_accuracy_drop": ...}
    accepts: Callable[[Candidate], bool] | None = None  # a built candidate within the budget? (None: unknown)


def build_candidates(plan: Plan, engines: Sequence[str], precisions: Sequence[str],
                     say: Callable[[str], None]) -> list[Candidate]:
    """Every requested engine x precision, built (or skipped with a reason), in table order."""
    out: list[Candidate] = []
    for engine in ENGINE_NAMES:
        for precision in PRECISIONS:
            if engine not in engines or precision not in precisions or (engine, precision) not in _BUILDERS:
                continue
            cand = Candidate(f"{engine}-{precision}", engine, precision)
            say(f"building {cand.name}")
            try:
                _BUILDERS[(engine, precision)](plan, cand, out)
            except (DependencyError, QuantizationError, ConfigError) as e:
                cand.skipped = str(e)
            out.append(cand)
    return out


def _ort_fp32(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    cand.path = plan.bundle / MODEL_FILE


def _ort_int8(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    out = plan.work / cand.name
    cand.manifest = quantize_model(plan.bundle, out, calibration=plan.calibration, eval_data=plan.eval_data,
                                   quiet=True, force=True)
    cand.path = out / MODEL_FILE


def _ort_mixed(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    out = plan.work / cand.name
    manifest = quantize_model(plan.bundle, out, calibration=plan.calibration, eval_data=plan.eval_data,
                              quiet=True, force=True, method="static", min_cosine=plan.budget.get("min_cosine"),
                              max_accuracy_drop=plan.budget.get("max_accuracy_drop"))
    kept = list((manifest.quantization or {}).get("fp32_matmuls_for_accuracy", []))
    if not kept:
        cand.skipped = "plain int8 already meets the budget: same graph as onnxruntime-int8"
        return
    cand.manifest, cand.path = manifest, out / MODEL_FILE


def _ov_fp32(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    cand.path = openvino_ptq.save_fp32_ir(plan.bundle / MODEL_FILE, plan.work / "openvino-fp32")


def _ov_bf16(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    fp32 = next((c.path for c in built if c.name == "openvino-fp32" and c.path), None)
    _require_bf16()  # ConfigError without bf16: the row says so
    cand.path = fp32 or openvino_ptq.save_fp32_ir(plan.bundle / MODEL_FILE, plan.work / "openvino-fp32")


def _ov_int8(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    cand.path = openvino_ptq.nncf_int8(plan.bundle / MODEL_FILE, plan.calibration_feeds, plan.work / cand.name)


@dataclass(frozen=True)
class MixedStep:
    """One openvino-mixed recipe: NNCF int8 with symmetric activations, with or without SmoothQuant, and the
    first ``bf16_down_projections`` FFN down-projections left out of int8."""

    name: str
    smooth_quant: bool
    bf16_down_projections: int


# Fastest first. SmoothQuant's per-channel scales are Multiply nodes in front of the GEMMs (BERT-base-sized,
# Zen 5, 1x128: 28.7 ms without vs 29.6 with); real checkpoints usually need them (all-MiniLM-L6-v2 without:
# cosine to fp32 0.980 / 0.946 on 1,000 unseen movie-review sentences, outside the default budget).
MIXED_STEPS = (
    MixedStep("no-smoothquant", smooth_quant=False, bf16_down_projections=0),
    MixedStep("all-int8", smooth_quant=True, bf16_down_projections=0),
    MixedStep("layer0-bf16", smooth_quant=True, bf16_down_projections=1),
)


def _ov_mixed(plan: Plan, cand: Candidate, built: Sequence[Candidate]) -> None:
    """edgebert's own OpenVINO recipe, budget-driven like onnxruntime-mixed: the first of ``MIXED_STEPS``
    whose graph meets the budget (the last one when none does, or when no budget check is given: the most
    accurate). Symmetric activations (no zero points) take the faster int8 GEMM path; everything not int8 is
    computed in bf16. Needs bf16: skipped with the reason otherwise."""
    _require_bf16()
    model = plan.bundle / MODEL_FILE
    downs = graph.down_projections(onnx.load(str(model), load_external_data=False))
    steps = MIXED_STEPS if plan.accepts is not None else MIXED_STEPS[-1:]
    for i, step in enumerate(steps):
        keep = downs[: step.bf16_down_projections]
        cand.path = openvino_ptq.nncf_int8(model, plan.calibration_feeds, plan.work / f"{cand.name}-{step.name}",
                                           symmetric_activations=True, ignored_names=keep,
                                           smooth_quant_alpha=None if step.smooth_quant else -1.0)
        cand.detail = {"recipe": step.name, "smooth_quant": step.smooth_quant, "bf16_matmuls_for_accuracy": keep}
        if i == len(steps) - 1 or (plan.accepts is not None and plan.accepts(cand)):
            return


def _require_bf16() -> None:
    """The OpenVINO engine's own bf16 check (DependencyError when OpenVINO is not installed)."""
    from edgebert.runtime.engines.openvino import require_bf16

    require_bf16()


_BUILDERS: dict[tuple[str, str], Callable[[Plan, Candidate, Sequence[Candidate]], None]] = {
    ("onnxruntime", "fp32"): _ort_fp32,
    ("onnxruntime", "int8"): _ort_int8,
    ("onnxruntime", "mixed"): _ort_mixed,
    ("openvino", "fp32"): _ov_fp32,
    ("openvino", "bf16"): _ov_bf16,
    ("openvino", "int8"): _ov_int8,
    ("openvino", "mixed"): _ov_mixed,
}
