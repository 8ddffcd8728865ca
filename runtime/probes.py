"""Golden probes: a few inputs with expected outputs, stored in the manifest to self-test a bundle.

The exporter (and the quantizer) record, for each probe input, a deterministic sample of every graph
output; :func:`verify_bundle` replays the probes through the runtime and compares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebert.errors import BundleError

SAMPLES_PER_OUTPUT = 64


def sample_output(value: np.ndarray, samples: int = SAMPLES_PER_OUTPUT) -> dict[str, Any]:
    """Shape plus ``samples`` values at evenly spaced flat positions (always incl. first and last)."""
    flat = np.asarray(value, dtype=np.float64).ravel()
    if flat.size == 0:
        return {"shape": list(value.shape), "index": [], "values": []}
    index = np.unique(np.linspace(0, flat.size - 1, num=min(samples, flat.size)).round().astype(np.int64))
    return {
        "shape": [int(d) for d in value.shape],
        "index": [int(i) for i in index],
        "values": [float(v) for v in flat[index]],
    }


def make_probe(item: str | tuple[str, str], outputs: dict[str, np.ndarray], atol: float) -> dict[str, Any]:
    return {
        "input": item if isinstance(item, str) else [item[0], item[1]],
        "atol": atol,
        "outputs": {name: sample_output(v) for name, v in outputs.items()},
    }


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of replaying one golden probe."""

    input: str | tuple[str, str]
    max_abs_diff: float
    atol: float
    ok: bool


def replay_probes(pipeline: Any) -> list[ProbeResult]:
    """Run every golden probe of the pipeline's bundle through its encoder and engine."""
    artifact = getattr(pipeline, "artifact", None)
    probes = (artifact.probes if artifact is not None and artifact.probes else None) or pipeline.manifest.probes
    if not probes:
        raise BundleError(f"{pipeline.path}: the manifest holds no golden probes to replay. Re-export the bundle.")
    results: list[ProbeResult] = []
    for n, probe in enumerate(probes):
        try:
            results.append(_replay(pipeline, probe))
        except (KeyError, IndexError, TypeError, ValueError) as e:  # a hand-edited or hostile manifest
            raise BundleError(
                f"{pipeline.path}: golden probe {n} in the manifest is malformed ({type(e).__name__}: {e}). "
                "Re-export the bundle."
            ) from e
    return results


def _replay(pipeline: Any, probe: Any) -> ProbeResult:
    raw = probe["input"]
    item: str | tuple[str, str] = raw if isinstance(raw, str) else (str(raw[0]), str(raw[1]))
    outputs = pipeline.forward(pipeline.encoder.encode([item]))[0]
    worst = 0.0
    for name, expected in probe["outputs"].items():
        if name not in outputs:
            raise BundleError(f"{pipeline.path}: probe expects output {name!r}, which the graph lacks.")
        actual = np.asarray(outputs[name], dtype=np.float64)
        if list(actual.shape) != list(expected["shape"]):
            worst = float("inf")
            continue
        got = actual.ravel()[np.asarray(expected["index"], dtype=np.int64)]
        if got.size:
            worst = max(worst, float(np.max(np.abs(got - np.asarray(expected["values"], dtype=np.float64)))))
    atol = float(probe.get("atol", 1e-3))
    return ProbeResult(input=item, max_abs_diff=worst, atol=atol, ok=worst <= atol)


def verify_bundle(
    bundle: str | os.PathLike[str], *, threads: int | None = 1, engine: str = "auto"
) -> list[ProbeResult]:
    """Check checksums, load the bundle's artifact for ``engine``, replay its golden probes (``edgebert verify``)."""
    from . import load

    pipeline = load(bundle, engine=engine, threads=threads, verify=True)
    return replay_probes(pipeline)
