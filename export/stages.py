"""The stages of :func:`edgebert.export.export_model`, in order.

1. :func:`load`: check the output path, read the folder, pick the task and max_length (no weights yet).
2. :func:`convert_graphs`: tokenizer, PyTorch model and its reference outputs on the probes, the plain
   ONNX graph, and the fused one (unless ``optimize="none"``).
3. :func:`verify`: open each graph once on an engine (one thread) and check parity with PyTorch.
4. :func:`pick_graph`: fused or plain (``optimize="auto"``: interleaved timing on the same engines).
5. :func:`finish`: golden probes from the chosen engine, and the complete manifest.

``export_model`` then writes the bundle (``edgebert.export.api``). Each stage returns a small frozen
record that the next ones read; nothing is shared through closures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ConfigError, ParityError, StorageError
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.manifest import MODEL_FILE, TOKENIZER_FILE, Manifest
from edgebert.runtime.probes import make_probe
from edgebert.runtime.tasks import Task, get_task
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer
from edgebert.runtime.writer import check_output

from . import choose, convert, heads, parity
from .config import ExportConfig
from .source import SourceModel, inspect_source, pick_task
from .specs import ArchSpec, arch_spec, attn_implementation, check_task, check_transformers
from .tokenizer import check_tokenizer_parity, save_tokenizer

# graph name -> (what progress calls it, what a parity error calls it)
GRAPHS: dict[str, tuple[str, str]] = {
    "none": ("plain", "the exported ONNX graph"),
    "fused": ("fused", "the fused graph"),
}


class Progress:
    """Timestamped progress lines on stderr (nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[edgebert {time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """Stage 1: what will be exported."""

    source: SourceModel
    arch: ArchSpec
    task: Task
    max_length: int


@dataclass(frozen=True)
class Converted:
    """Stage 2: the draft manifest, the probes with PyTorch's outputs, and the candidate graphs."""

    manifest: Manifest  # task, inputs, outputs, max_length, labels, pooling, tokenizer
    encoder: TextEncoder
    tokenizer_file: Path
    probes: parity.ProbeSet
    reference: list[dict[str, np.ndarray]]
    graphs: dict[str, Path]  # "none" (plain), and "fused" when the fusion applied
    optimization: dict[str, Any]  # export time, op counts, fusion report


@dataclass(frozen=True)
class Candidate:
    """Stage 3: a graph that passed parity, open on its engine."""

    path: Path
    engine: Engine
    diffs: dict[str, float]
    cosines: dict[str, float]


def load(model_dir: str | os.PathLike[str], out: Path, cfg: ExportConfig, progress: Progress) -> Plan:
    check_output(out, cfg.force)
    source = inspect_source(model_dir)
    arch = arch_spec(source.model_type)
    check_transformers(source.model_type)
    name = cfg.task
    if name == "auto":
        name, why = pick_task(source)
        progress(f"task: {name} (auto: {why})")
    check_task(source.model_type, name)
    task = get_task(name)
    if task.pooled and source.pooling is None:
        progress("embedding: no sentence-transformers config; using mean pooling without normalization")
    return Plan(source, arch, task, _max_length(cfg.max_length, source, arch.position_offset, task))


def _max_length(requested: int | None, source: SourceModel, offset: int, task: Task) -> int:
    positions = int(source.config.get("max_position_embeddings") or 512) - offset
    if requested is not None:
        if requested > positions:
            raise ConfigError(
                f"max_length={requested} exceeds the model's {positions} position embeddings; give at most {positions}."
            )
        return requested
    if task.pooled and source.st_max_length:
        return min(source.st_max_length, positions)
    return positions


@contextlib.contextmanager
def work_dir() -> Iterator[Path]:
    """A private scratch directory for the intermediate graphs, removed afterwards."""
    try:
        tmp = tempfile.TemporaryDirectory(prefix="edgebert-export-")
    except OSError as e:
        raise StorageError(
            f"cannot create a temporary directory ({e}). Set TMPDIR to a writable disk with space."
        ) from e
    with tmp as name:
        yield Path(name)


def convert_graphs(plan: Plan, cfg: ExportConfig, work: Path, progress: Progress) -> Converted:
    progress(f"load {plan.arch.name} from {plan.source.path}")
    tokenizer_file = work / TOKENIZER_FILE
    tok_record = save_tokenizer(plan.source.path, tokenizer_file)
    model = convert.load_torch_model(plan.source.path, plan.task.name, attn_implementation(plan.arch))
    head = _head(plan, model)
    if plan.task.head_kind == "splade" and head is not None:
        model = heads.splade_model(model, head)
    manifest = _draft_manifest(plan, model, tok_record, head)
    encoder = TextEncoder(load_tokenizer(tokenizer_file), manifest)
    check_tokenizer_parity(plan.source.path, encoder)
    probes = parity.make_probes(encoder, plan.max_length)
    progress(f"PyTorch reference outputs for {probes.count} probes (longest: {probes.long_length} tokens)")
    torch_run = functools.partial(convert.torch_outputs, model, outputs=plan.task.output_names)
    reference = parity.run_probes(probes, torch_run, plan.task.per_token)

    progress(f"export to ONNX (opset {convert.OPSET}, inputs: {', '.join(manifest.inputs)})")
    plain = _graph_file(work, "plain")  # one directory per graph: >2 GB graphs bring external data files
    seconds = convert.export_onnx(model, probes.batch_feeds, manifest.inputs, plan.task, plain)
    del model, torch_run
    optimization: dict[str, Any] = {"export_seconds": round(seconds, 2), "ops_plain": convert.op_counts(plain)}
    graphs = {"none": plain}
    if cfg.optimize in ("auto", "fused"):
        fused = _fuse(plan, plain, _graph_file(work, "fused"), optimization, progress)
        if fused is not None:
            graphs["fused"] = fused
    return Converted(manifest, encoder, tokenizer_file, probes, reference, graphs, optimization)


def _fuse(plan: Plan, plain: Path, fused: Path, optimization: dict[str, Any], progress: Progress) -> Path | None:
    """ONNX Runtime's transformer fusions into ``fused``; records the report and op counts in ``optimization``.
    Returns the fused graph, or None when no fusion applies to the model."""
    progress("optimize: ONNX Runtime fusions (attention, skip-layernorm, gelu)")
    optimization["fusion"] = convert.fuse(plain, fused, plan.arch, plan.source.config)
    if not optimization["fusion"]["applied"]:
        return None
    optimization["ops_fused"] = convert.op_counts(fused)
    optimization["fused_ops"] = {k: v for k, v in optimization["ops_fused"].items() if k in convert.FUSED_OP_TYPES}
    progress(f"fused ops: {optimization['fused_ops']}")
    return fused


def _graph_file(work: Path, name: str) -> Path:
    folder = work / name
    folder.mkdir()
    return folder / MODEL_FILE


def _head(plan: Plan, model: Any) -> dict[str, Any] | None:
    """The retrieval head record (cross-encoder activation, SPLADE pooling) from the folder, else None."""
    if plan.task.head_kind == "cross-encoder":
        return heads.cross_encoder_head(plan.source.path, int(model.config.num_labels))
    if plan.task.head_kind == "splade":
        return heads.splade_head(plan.source.path, _modules(plan.source.path))
    return None


def _modules(root: Path) -> list[dict[str, Any]]:
    import json

    path = root / "modules.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def _draft_manifest(plan: Plan, model: Any, tokenizer: dict[str, Any], head: dict[str, Any] | None) -> Manifest:
    return Manifest(
        task=plan.task.name,
        architecture=plan.source.model_type,
        inputs=convert.used_inputs(model),
        outputs=plan.task.output_names,
        max_length=plan.max_length,
        labels=_labels(model) if plan.task.labels else None,
        pooling=_pooling(plan),
        head=head,
        tokenizer=tokenizer,
    )


def _labels(model: Any) -> tuple[str, ...]:
    id2label = getattr(model.config, "id2label", None) or {}
    n = int(model.config.num_labels)
    return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n))


def _pooling(plan: Plan) -> dict[str, Any] | None:
    if not plan.task.pooled:
        return None
    pooling = plan.source.pooling
    return dict(pooling) if pooling else {"mode": "mean", "normalize": False, "source": "default"}


def verify(
    plan: Plan, conv: Converted, cfg: ExportConfig, progress: Progress
) -> tuple[dict[str, Candidate], dict[str, Any]]:
    """Open each graph once (one thread) and check parity. A plain graph that fails raises; a fused one
    that fails raises only for ``optimize="fused"``, else it is dropped. Returns the candidates and the
    optimization record's updates (the rejected fusion)."""
    candidates: dict[str, Candidate] = {}
    updates: dict[str, Any] = {}
    for name, path in conv.graphs.items():
        label, what = GRAPHS[name]
        progress(f"verify the {label} graph against PyTorch")
        engine = open_engine(path, threads=1)
        outputs = parity.run_probes(conv.probes, engine.run, plan.task.per_token)
        diffs, cosines = parity.compare(conv.reference, outputs, cfg.atol)
        try:
            parity.check(diffs, cfg.atol, what)
        except ParityError as e:
            if name == "none" or cfg.optimize == "fused":
                raise
            updates["fusion"] = {**conv.optimization["fusion"], "rejected": str(e)}
            continue
        candidates[name] = Candidate(path, engine, diffs, cosines)
    return candidates, updates


def pick_graph(
    candidates: dict[str, Candidate], conv: Converted, cfg: ExportConfig, progress: Progress
) -> tuple[str, dict[str, Any]]:
    """The graph to ship and the timing record (empty unless ``optimize="auto"`` timed both graphs)."""
    if cfg.optimize == "none" or "fused" not in candidates:
        return "none", {}
    if cfg.optimize == "fused":
        return "fused", {}
    engines = {name: c.engine for name, c in candidates.items()}
    return choose.choose(engines, conv.probes.long_feeds, cfg.timing_rounds, progress)


def finish(
    plan: Plan, conv: Converted, chosen: Candidate, optimization: dict[str, Any], cfg: ExportConfig, progress: Progress
) -> Manifest:
    """The bundle's manifest: the draft plus optimization, parity, golden probes, source and versions."""
    progress(f"parity: {', '.join(f'{k} max abs diff {v:.2e}' for k, v in chosen.diffs.items())}")
    report = parity.ParityReport(chosen.diffs, chosen.cosines, cfg.atol, len(conv.reference), conv.probes.long_length)
    return dataclasses.replace(
        conv.manifest,
        optimization=optimization,
        parity=report.to_json(),
        probes=tuple(golden_probes(chosen.engine, conv.encoder, plan.task, plan.max_length)),
        source=source_record(plan.source),
        versions=versions(),
    )


def golden_probes(engine: Engine, encoder: TextEncoder, task: Task, max_length: int) -> list[dict[str, Any]]:
    """Outputs for a few probes, replayed untruncated by the runtime: only probes that fit ``max_length``."""
    fitting = [item for item in parity.PROBE_TEXTS if len(encoder.encode([item])[0].ids) <= max_length]
    chosen = fitting[1 : 1 + parity.GOLDEN_PROBES] or fitting[:1]
    if fitting and fitting[-1] not in chosen:
        chosen.append(fitting[-1])  # the text pair, when it fits
    probes = []
    for item in chosen:
        enc = encoder.encode([item])
        outs = engine.run(encoder.feeds(enc))
        probes.append(make_probe(item, parity.item_outputs(outs, 0, len(enc[0].ids), task.per_token), atol=1e-3))
    return probes


def source_record(source: SourceModel) -> dict[str, Any]:
    return {
        "path": str(source.path.resolve()),
        "model_type": source.model_type,
        "architectures": list(source.architectures),
        "sentence_transformers": source.sentence_transformers,
        "name_or_path": source.config.get("_name_or_path"),
        "problem_type": source.config.get("problem_type"),
    }


def versions() -> dict[str, str]:
    """Python, opset and the versions of the packages that made the bundle."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version(), "opset": str(convert.OPSET)}
    for name in ("edgebert", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out
