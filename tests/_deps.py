"""Optional test dependencies: a missing one skips a test on a developer's machine, but fails it in CI.

CI (``CI=true``, see ``.ci/run``) installs everything the suite needs, so a missing package there is a
broken set-up, never a reason to report green.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str, why: str = "") -> ModuleType:
    """Import ``module``; if it is missing, skip the test locally and fail it in CI."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        message = f"{module} is not installed{': ' + why if why else ''} (bash scripts/setup.sh installs it)"
        if in_ci():
            pytest.fail(f"CI installs every test dependency, but {message}: {e}", pytrace=False)
        pytest.skip(message)
        raise  # unreachable: skip raises


def require_optimum() -> None:
    """The optimum anchor rows. optimum-onnx 0.1.0 pins transformers < 4.58, so under transformers 5 they are
    skipped with the benchmark's own reason (also in CI: scripts/test.sh runs them in its transformers 4.57
    pass); under 4.x a missing optimum skips locally and fails in CI."""
    from edgebert.benchmarks.builders import optimum_missing
    from edgebert.export.specs import is_transformers_v4

    why = optimum_missing()
    if why is None:
        return
    if is_transformers_v4():
        require("optimum.onnxruntime", "the optimum anchor rows of the benchmark")
    pytest.skip(why)


def openvino_has_bf16() -> bool:
    """Whether OpenVINO (required: skipped locally, failed in CI when missing) reports bf16 on this CPU."""
    ov = require("openvino")
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def fake_cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make OpenVINO report no bf16 on this CPU (a no-op where it really has none)."""
    ov = require("openvino")
    if openvino_has_bf16():
        real = ov.Core.get_property
        fake = ["FP32", "INT8"]
        monkeypatch.setattr(ov.Core, "get_property", lambda self, *a: fake if a[-1] == "OPTIMIZATION_CAPABILITIES"
                            else real(self, *a))  # fmt: skip
