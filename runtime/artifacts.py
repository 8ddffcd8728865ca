"""Artifacts: the runnable graphs a bundle carries, each for an engine and a precision.

A bundle from ``edgebert export`` or ``edgebert quantize`` carries one graph, ``model.onnx``, which every
engine can read. ``edgebert optimize`` may add graphs made for one engine (an OpenVINO IR quantized by
NNCF, an fp32 graph that OpenVINO runs in bf16) and lists them in the manifest's ``artifacts``, the
one it measured fastest first. ``model.onnx`` is always there, so a bundle runs wherever ONNX Runtime does.

Which artifact a pipeline opens (:func:`choose_artifact`):

- ``engine="auto"``: the first listed artifact whose engine is installed and, if it computes in bf16,
  whose CPU has bf16 (so the optimizer's choice when it can run here, else the best one that can);
- a named engine: the first artifact made for that engine, else ``model.onnx`` when it is fp32 (both
  engines read an fp32 ONNX graph; an int8 ``model.onnx`` uses ONNX Runtime's own int8 operators).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgebert.errors import BundleError, ConfigError

from .engines import ENGINES, installed_engines
from .isa import cpu_has_bf16
from .manifest import MODEL_FILE, Manifest, check_member_name

PRECISIONS = ("fp32", "bf16", "int8", "mixed")
AUTO = "auto"


@dataclass(frozen=True)
class Artifact:
    """One runnable graph: its file in the bundle, the engine it is made for, its precision.

    ``files`` are every member it needs (an OpenVINO IR is ``.xml`` + ``.bin``). ``precision`` "bf16"
    means an fp32 graph that the engine runs with bf16 arithmetic; "mixed" on OpenVINO means an int8
    graph whose other operators (attention, normalization, activations) run in bf16 (see
    :func:`compute_precision`).
    """

    file: str
    engine: str
    precision: str
    files: tuple[str, ...]
    probes: tuple[Mapping[str, Any], ...] = ()  # golden probes of this artifact (else the manifest's)

    @property
    def engine_precision(self) -> str:
        """The precision hint the engine is opened with ("bf16" or "fp32"; int8 graphs carry their own)."""
        return compute_precision(self.engine, self.precision)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "engine": self.engine, "precision": self.precision,
                                "files": list(self.files)}
        if self.probes:
            data["probes"] = [dict(p) for p in self.probes]
        return data


def compute_precision(engine: str, precision: str) -> str:
    """The engine's precision hint for an artifact of ``precision``: "bf16" for bf16 and for OpenVINO's
    mixed (int8 GEMMs, everything else in bf16), "fp32" otherwise (ONNX Runtime's mixed keeps MatMuls in
    fp32; int8 operators carry their own precision)."""
    return "bf16" if precision == "bf16" or (engine == "openvino" and precision == "mixed") else "fp32"


def artifacts_of(manifest: Manifest) -> tuple[Artifact, ...]:
    """The manifest's artifacts in order of preference; a bundle without a list has ``model.onnx`` only."""
    listed = tuple(parse_artifact(a, "edgebert.json") for a in manifest.artifacts)
    unlisted = sorted({f for a in listed for f in a.files} - set(manifest.files)) if manifest.files else []
    if unlisted:
        raise BundleError(f"edgebert.json: artifact file(s) {unlisted} have no checksum in 'files'. "
                          "Re-export the bundle.")
    default = Artifact(MODEL_FILE, "onnxruntime", _plain_precision(manifest.precision), (MODEL_FILE,))
    return listed if any(a.file == MODEL_FILE for a in listed) else (*listed, default)


def parse_artifact(data: Mapping[str, Any], where: str) -> Artifact:
    """One ``artifacts`` entry, validated (a hostile manifest gets a BundleError, not a crash)."""
    if not isinstance(data, Mapping):
        raise BundleError(f"{where}: each 'artifacts' entry must be a JSON object. Re-export the bundle.")
    file, engine, precision = data.get("file"), data.get("engine"), data.get("precision")
    files = data.get("files", [file])
    if not isinstance(file, str) or not isinstance(files, (list, tuple)) or not all(isinstance(f, str) for f in files):
        raise BundleError(f"{where}: an 'artifacts' entry has no valid 'file'/'files'. Re-export the bundle.")
    if engine not in ENGINES:
        raise BundleError(f"{where}: artifact {file!r} is for unknown engine {engine!r} (known: {', '.join(ENGINES)}).")
    if precision not in PRECISIONS:
        raise BundleError(f"{where}: artifact {file!r} has unknown precision {precision!r}. Re-export the bundle.")
    for name in (file, *files):
        check_member_name(name, where)
    probes = data.get("probes", [])
    if not isinstance(probes, (list, tuple)) or not all(isinstance(p, Mapping) for p in probes):
        raise BundleError(f"{where}: artifact {file!r} has malformed 'probes'. Re-export the bundle.")
    members = tuple(files) if file in files else (file, *files)
    return Artifact(file, str(engine), str(precision), members, tuple(probes))


def installed_engine(name: str) -> bool:
    """True when ``name``'s library can be imported here (checked without importing it)."""
    return name in installed_engines()


def choose_artifact(manifest: Manifest, engine: str) -> tuple[Artifact, str]:
    """The artifact to open for ``engine`` ("auto" or a name from ENGINES), and the engine to open it on."""
    found = artifacts_of(manifest)
    if engine == AUTO:  # the first artifact this machine can run: its engine installed, bf16 where it needs it
        for artifact in found:
            runs_here = artifact.engine_precision != "bf16" or cpu_has_bf16() is not False
            if runs_here and installed_engine(artifact.engine):
                return artifact, artifact.engine
        return _onnx(found), "onnxruntime"
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; choose auto or one of: {', '.join(ENGINES)}.")
    for artifact in found:
        if artifact.engine == engine:
            return artifact, engine
    portable = _onnx(found)
    if portable.precision != "fp32":
        raise ConfigError(
            f"engine={engine!r}: this bundle's {portable.precision} graph ({MODEL_FILE}) is built for ONNX Runtime "
            f"(its int8 operators are ONNX Runtime's own); run it with engine='onnxruntime' or 'auto', or build "
            f"an artifact for {engine} from the fp32 bundle with `edgebert optimize`."
        )
    return portable, engine


def engine_names() -> Sequence[str]:
    """The accepted ``engine=`` values: "auto" and every engine name."""
    return (AUTO, *ENGINES)


def _onnx(found: Sequence[Artifact]) -> Artifact:
    return next(a for a in found if a.file == MODEL_FILE)


def _plain_precision(precision: str) -> str:
    return precision if precision in PRECISIONS else "fp32"
