"""``export_model``: a Hugging Face folder -> a verified, fused ONNX bundle.

The export runs as visible stages (``edgebert.export.stages``): load -> convert -> verify -> choose ->
finish, then :func:`write` puts the bundle in place, whole or not at all.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from edgebert.errors import StorageError
from edgebert.runtime.manifest import MODEL_FILE, TOKENIZER_FILE, Manifest
from edgebert.runtime.writer import write_bundle

from . import convert, stages
from .config import ExportConfig, resolve_config
from .stages import versions

__all__ = ["ExportConfig", "export_model", "versions", "write"]


def export_model(
    model_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    **overrides: Any,
) -> Manifest:
    """Export a local Hugging Face model folder to a bundle; returns the written manifest.

    ``overrides`` are :class:`ExportConfig` fields, e.g. ``export_model(src, out, task="auto")``; an
    unknown one or a bad value raises :class:`~edgebert.errors.ConfigError`. Raises an
    :class:`~edgebert.errors.EdgebertError` subclass on bad input or failed parity; on any error nothing
    is left at ``output_dir``.
    """
    cfg = resolve_config(config, overrides)
    out = Path(output_dir)
    progress = stages.Progress(cfg.quiet)
    plan = stages.load(model_dir, out, cfg, progress)
    with stages.work_dir() as work:
        converted = stages.convert_graphs(plan, cfg, work, progress)
        candidates, fusion_update = stages.verify(plan, converted, cfg, progress)
        chosen, timing = stages.pick_graph(candidates, converted, cfg, progress)
        optimization = {**converted.optimization, **fusion_update, **timing, "chosen": chosen}
        manifest = stages.finish(plan, converted, candidates[chosen], optimization, cfg, progress)
        progress(f"write bundle {out}")
        written = write(out, manifest, candidates[chosen].path, converted.tokenizer_file, force=cfg.force)
    progress("done")
    return written


def write(out: Path, manifest: Manifest, graph: Path, tokenizer_file: Path, *, force: bool) -> Manifest:
    """Write the bundle (graph, tokenizer.json, manifest with checksums) atomically to ``out``."""
    return write_bundle(out, manifest, functools.partial(_fill, out, graph, tokenizer_file), force=force)


def _fill(out: Path, graph: Path, tokenizer_file: Path, tmp: Path) -> None:
    try:
        convert.write_graph(graph, tmp / MODEL_FILE)
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER_FILE)
    except OSError as e:
        raise StorageError(
            f"cannot write the bundle next to {out} ({e}). Nothing was written; free disk space or "
            "choose another output path and retry."
        ) from e
