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
