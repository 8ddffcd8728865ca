"""``export_model``: a Hugging Face folder -> a verified, fused ONNX bundle."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgebert.errors import (
    EdgebertError,
    ExportError,
    ModelSourceError,
    OutputExistsError,
    ParityError,
    StorageError,
)
from edgebert.runtime.bundle import MANIFEST, MODEL_FILE, TOKENIZER_FILE, Manifest, write_bundle
from edgebert.runtime.probes import make_probe
from edgebert.runtime.session import create_session, run_session
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

from . import choose, convert, parity
from .source import SourceModel, inspect_source, pick_task
from .specs import TASK_HEADS, arch_spec, check_task

Optimize = Literal["auto", "fused", "none"]


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_model`.

    Attributes:
        task: one of the tasks in ``edgebert.export.TASK_HEADS`` or "auto" (from the folder/config).
        max_length: maximum tokens per window; default from the model (sentence-transformers'
            max_seq_length, else the position embeddings).
        optimize: "auto" keeps the fused graph only when it is clearly faster here (timed at 1 thread at
            a few shapes, see ``edgebert.export.choose``); "fused" or "none" force one.
        atol: parity tolerance, max abs diff per output with padding masked.
        force: overwrite an existing output directory.
        quiet: no progress on stderr.
    """

    task: str = "auto"
    max_length: int | None = None
    optimize: Optimize = "auto"
    atol: float = 1e-4
    force: bool = False
    quiet: bool = False
    timing_rounds: int = 15  # interleaved timing rounds per shape for optimize="auto"


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[edgebert {time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def export_model(
    model_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    **overrides: Any,
) -> Manifest:
    """Export a local Hugging Face model folder to a bundle; returns the written manifest.

    ``overrides`` are :class:`ExportConfig` fields, e.g. ``export_model(src, out, task="auto")``.
    Raises an :class:`~edgebert.errors.EdgebertError` subclass on bad input or failed parity; on any
    error nothing is left at ``output_dir``.
    """
    cfg = _config(config, overrides)
    out = Path(output_dir)
    _check_output(out, cfg.force)
    progress = _Progress(cfg.quiet)
    source = inspect_source(model_dir)
    spec = arch_spec(source.model_type)
    task = cfg.task
    if task == "auto":
        task, why = pick_task(source)
        progress(f"task: {task} (auto: {why})")
    check_task(source.model_type, task)
    max_length = _max_length(cfg, source, spec.position_offset, task)
    if task == "embedding" and source.pooling is None:
        progress("embedding: no sentence-transformers config; using mean pooling without normalization")

    with _work_dir() as work:
        progress(f"load {spec.name} from {source.path}")
        tok_record = _save_tokenizer(source.path, work / TOKENIZER_FILE)
        model = convert.load_torch_model(source.path, task, attn_implementation=spec.attn_implementation)
        inputs = convert.used_inputs(model)
        outputs = TASK_HEADS[task][1]
        manifest = Manifest(
            task=task,
            architecture=source.model_type,
            inputs=inputs,
            outputs=outputs,
            max_length=max_length,
            labels=_labels(model, task),
            pooling=_pooling(source, task),
            tokenizer=tok_record,
        )
        encoder = TextEncoder(load_tokenizer(work / TOKENIZER_FILE), manifest)
        _check_tokenizer_parity(source.path, encoder)
        probe_items = list(parity.PROBE_TEXTS)
        probe_encs = parity.encode_probes(encoder, probe_items, max_length)
        batch_feeds = encoder.feeds(probe_encs)
        long_enc = parity.long_probe(encoder, max_length)
        long_feeds = encoder.feeds([long_enc])
        per_token = set(outputs) - ({"logits"} if task == "sequence-classification" else set())
        lengths = [len(e.ids) for e in probe_encs]

        def split(outs: dict[str, np.ndarray], lens: list[int]) -> list[dict[str, np.ndarray]]:
            return [parity.item_outputs(outs, i, n, per_token) for i, n in enumerate(lens)]

        progress(f"PyTorch reference outputs for {len(lengths) + 1} probes (longest: {len(long_enc.ids)} tokens)")
        reference = split(convert.torch_outputs(model, batch_feeds, outputs), lengths)
        reference += split(convert.torch_outputs(model, long_feeds, outputs), [len(long_enc.ids)])

        progress(f"export to ONNX (opset {convert.OPSET}, inputs: {', '.join(inputs)})")
        raw = work / "plain" / MODEL_FILE  # one directory per graph: >2 GB graphs bring external data files
        raw.parent.mkdir()
        export_seconds = convert.export_onnx(model, batch_feeds, inputs, outputs, raw)
        del model

        def run_graph(path: Path) -> list[dict[str, np.ndarray]]:
            session = create_session(path, threads=1)
            names = [o.name for o in session.get_outputs()]
            batch = dict(zip(names, run_session(session, batch_feeds), strict=True))
            long = dict(zip(names, run_session(session, long_feeds), strict=True))
            return split(batch, lengths) + split(long, [len(long_enc.ids)])

        progress("verify the plain graph against PyTorch")
        raw_diffs, raw_cos = parity.compare(reference, run_graph(raw), cfg.atol)
        parity.check(raw_diffs, cfg.atol, "the exported ONNX graph")
        candidates: dict[str, tuple[Path, dict[str, float], dict[str, float]]] = {"none": (raw, raw_diffs, raw_cos)}
        optimization: dict[str, Any] = {"export_seconds": round(export_seconds, 2), "ops_plain": convert.op_counts(raw)}
        if cfg.optimize in ("auto", "fused"):
            progress("optimize: ONNX Runtime fusions (attention, skip-layernorm, gelu)")
            fused = work / "fused" / MODEL_FILE
            fused.parent.mkdir()
            report = convert.fuse(raw, fused, spec, source.config)
            optimization["fusion"] = report
            if report["applied"]:
                optimization["ops_fused"] = convert.op_counts(fused)
                optimization["fused_ops"] = {
                    k: v for k, v in optimization["ops_fused"].items() if k in convert.FUSED_OP_TYPES
                }
                progress(f"fused ops: {optimization['fused_ops']}; verify the fused graph")
                f_diffs, f_cos = parity.compare(reference, run_graph(fused), cfg.atol)
                try:
                    parity.check(f_diffs, cfg.atol, "the fused graph")
                    candidates["fused"] = (fused, f_diffs, f_cos)
                except ParityError as e:
                    if cfg.optimize == "fused":
                        raise
                    optimization["fusion"] = {**report, "rejected": str(e)}
        chosen = _choose(cfg, candidates, long_feeds, optimization, progress)
        graph, diffs, cosines = candidates[chosen]
        optimization["chosen"] = chosen
        progress(f"parity: {', '.join(f'{k} max abs diff {v:.2e}' for k, v in diffs.items())}")
        probes = _golden_probes(graph, encoder, probe_items, per_token, max_length)
        manifest = Manifest(
            **{
                **manifest.to_json(),
                "inputs": inputs,
                "outputs": outputs,
                "labels": manifest.labels,
                "optimization": optimization,
                "parity": parity.ParityReport(diffs, cosines, cfg.atol, len(reference), len(long_enc.ids)).to_json(),
                "probes": tuple(probes),
                "source": _source_record(source),
                "versions": versions(),
            }
        )

        def fill(tmp: Path) -> None:
            try:
                convert.write_graph(graph, tmp / MODEL_FILE)
                shutil.copyfile(work / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
            except OSError as e:
                raise StorageError(
                    f"cannot write the bundle next to {out} ({e}). Nothing was written; free disk space or "
                    "choose another output path and retry."
                ) from e

        progress(f"write bundle {out}")
        written = write_bundle(out, manifest, fill, force=cfg.force)
    progress("done")
    return written


def _check_output(out: Path, force: bool) -> None:
    """Refuse an existing output unless forced, and never replace something that is not a bundle."""
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise OutputExistsError(f"{out} already exists. Choose another path or pass force=True (--force).")
    if out.is_symlink() or not out.is_dir():
        raise OutputExistsError(
            f"{out} exists and is not a directory; refusing to replace it. Remove it or choose another path."
        )
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputExistsError(
            f"{out} is a non-empty directory that is not an edgebert bundle (no {MANIFEST}); --force only replaces "
            "bundles. Choose another path or remove it yourself."
        )


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    """A private scratch directory for the intermediate graphs, removed afterwards."""
    try:
        tmp = tempfile.TemporaryDirectory(prefix="edgebert-export-")
    except OSError as e:
        raise StorageError(
            f"cannot create a temporary directory ({e}). Set TMPDIR to a writable disk with space."
        ) from e
    with tmp as name:
        yield Path(name)


def _config(config: ExportConfig | None, overrides: dict[str, Any]) -> ExportConfig:
    import dataclasses

    base = config or ExportConfig()
    known = {f.name for f in dataclasses.fields(ExportConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise EdgebertError(f"unknown export option(s) {unknown}; known: {sorted(known)}.")
    cfg = dataclasses.replace(base, **overrides)
    if cfg.optimize not in ("auto", "fused", "none"):
        raise EdgebertError(f"optimize={cfg.optimize!r}; choose auto, fused or none.")
    if not (isinstance(cfg.atol, (int, float)) and 0 < cfg.atol < float("inf")):
        raise EdgebertError(f"atol={cfg.atol!r}; give a positive tolerance such as 1e-4.")
    if cfg.max_length is not None and cfg.max_length < 8:
        raise EdgebertError(f"max_length={cfg.max_length} is too small; give at least 8.")
    return cfg


def _save_tokenizer(path: Path, dest: Path) -> dict[str, Any]:
    """Write a self-contained fast tokenizer.json (padding/truncation stripped); return its record."""
    import warnings

    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tok = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)
    except Exception as e:
        raise ModelSourceError(
            f"{path}: cannot load the tokenizer ({type(e).__name__}: {str(e).strip()[:300]}). "
            "Save it with tokenizer.save_pretrained(folder)."
        ) from e
    if not getattr(tok, "is_fast", False):
        raise ModelSourceError(f"{path}: only a slow tokenizer is available; install 'sentencepiece' and retry.")
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    try:
        backend.save(str(dest))
    except Exception as e:  # tokenizers raises a bare Exception on I/O errors
        raise StorageError(f"cannot write {dest} ({e}). Free disk space in the temporary directory and retry.") from e
    return {
        "class": type(tok).__name__,
        "pad_token": tok.pad_token,
        "pad_id": tok.pad_token_id if tok.pad_token_id is not None else 0,
        "mask_token": tok.mask_token,
        "mask_id": tok.mask_token_id,
        "cls_token": tok.cls_token,
        "sep_token": tok.sep_token,
        "unk_token": tok.unk_token,
        "special_ids": sorted(int(i) for i in tok.all_special_ids),
        "model_max_length": int(min(tok.model_max_length, 10**9)),
        "padding_side": tok.padding_side,
        "clean_up_tokenization_spaces": bool(getattr(tok, "clean_up_tokenization_spaces", False)),
    }


def _check_tokenizer_parity(path: Path, encoder: TextEncoder) -> None:
    """The bundle's tokenizer must give the same ids as the transformers tokenizer."""
    import warnings

    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)
    for item in parity.PROBE_TEXTS:
        ours = encoder.encode([item])[0].ids
        theirs = (tok(*item, verbose=False) if isinstance(item, tuple) else tok(item, verbose=False))["input_ids"]
        if list(ours) != list(theirs):
            raise ExportError(f"tokenizer.json gives other ids than the transformers tokenizer for {item!r}.")


def _max_length(cfg: ExportConfig, source: SourceModel, offset: int, task: str) -> int:
    positions = int(source.config.get("max_position_embeddings") or 512) - offset
    if cfg.max_length is not None:
        if cfg.max_length > positions:
            raise EdgebertError(
                f"max_length={cfg.max_length} exceeds the model's {positions} position embeddings; "
                f"give at most {positions}."
            )
        return cfg.max_length
    if task == "embedding" and source.st_max_length:
        return min(source.st_max_length, positions)
    return positions


def _labels(model: Any, task: str) -> tuple[str, ...] | None:
    if task not in ("sequence-classification", "token-classification"):
        return None
    id2label = getattr(model.config, "id2label", None) or {}
    n = int(model.config.num_labels)
    return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n))


def _pooling(source: SourceModel, task: str) -> dict[str, Any] | None:
    if task != "embedding":
        return None
    return dict(source.pooling) if source.pooling else {"mode": "mean", "normalize": False, "source": "default"}


def _choose(
    cfg: ExportConfig,
    candidates: dict[str, tuple[Path, dict[str, float], dict[str, float]]],
    feeds: dict[str, np.ndarray],
    optimization: dict[str, Any],
    progress: _Progress,
) -> str:
    if cfg.optimize == "none" or "fused" not in candidates:
        return "none"
    if cfg.optimize == "fused":
        return "fused"
    graphs = {name: path for name, (path, _, _) in candidates.items()}
    chosen, record = choose.choose(graphs, feeds, cfg.timing_rounds, progress)
    optimization.update(record)
    return chosen


def _golden_probes(
    graph: Path, encoder: TextEncoder, items: list[Any], per_token: set[str], max_length: int
) -> list[dict[str, Any]]:
    """Outputs for a few probes, replayed untruncated by the runtime: only probes that fit ``max_length``."""
    session = create_session(graph, threads=1)
    names = [o.name for o in session.get_outputs()]
    fitting = [item for item in items if len(encoder.encode([item])[0].ids) <= max_length]
    chosen = fitting[1 : 1 + parity.GOLDEN_PROBES] or fitting[:1]
    if fitting and fitting[-1] not in chosen:
        chosen.append(fitting[-1])  # the text pair, when it fits
    probes = []
    for item in chosen:
        enc = encoder.encode([item])
        outs = dict(zip(names, run_session(session, encoder.feeds(enc)), strict=True))
        probes.append(make_probe(item, parity.item_outputs(outs, 0, len(enc[0].ids), per_token), atol=1e-3))
    return probes


def _source_record(source: SourceModel) -> dict[str, Any]:
    return {
        "path": str(source.path.resolve()),
        "model_type": source.model_type,
        "architectures": list(source.architectures),
        "sentence_transformers": source.sentence_transformers,
        "name_or_path": source.config.get("_name_or_path"),
        "problem_type": source.config.get("problem_type"),
    }


def versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version(), "opset": str(convert.OPSET)}
    for name in ("edgebert", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out
