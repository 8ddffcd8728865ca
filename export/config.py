"""Options of :func:`edgebert.export.export_model`, checked before any work."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgebert.errors import ConfigError

Optimize = Literal["auto", "fused", "none"]
OPTIMIZE_CHOICES: tuple[str, ...] = ("auto", "fused", "none")
MIN_MAX_LENGTH = 8


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_model`.

    Attributes:
        task: one of the tasks in ``edgebert.runtime.tasks.TASKS`` or "auto" (from the folder/config).
        max_length: maximum tokens per window; default from the model (sentence-transformers'
            max_seq_length, else the position embeddings).
        optimize: "auto" keeps the fused graph only when it is clearly faster here (timed at 1 thread at
            a few shapes, see ``edgebert.export.choose``); "fused" or "none" force one.
        atol: parity tolerance, max abs diff per output with padding masked.
        force: overwrite an existing output directory.
        quiet: no progress on stderr.
        timing_rounds: interleaved timing rounds per shape for optimize="auto".
    """

    task: str = "auto"
    max_length: int | None = None
    optimize: Optimize = "auto"
    atol: float = 1e-4
    force: bool = False
    quiet: bool = False
    timing_rounds: int = 15


def resolve_config(config: ExportConfig | None, overrides: Mapping[str, Any]) -> ExportConfig:
    """``config`` (default: the defaults) with ``overrides`` applied; a bad name or value raises ConfigError."""
    if config is not None and not isinstance(config, ExportConfig):
        raise ConfigError(f"config must be an ExportConfig, not {type(config).__name__}.")
    known = [f.name for f in dataclasses.fields(ExportConfig)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"unknown export option(s) {unknown}; known: {sorted(known)}.")
    cfg = dataclasses.replace(config or ExportConfig(), **overrides)
    if cfg.optimize not in OPTIMIZE_CHOICES:
        raise ConfigError(f"optimize={cfg.optimize!r}; choose {', '.join(OPTIMIZE_CHOICES)}.")
    if not (_number(cfg.atol) and 0 < cfg.atol < math.inf):
        raise ConfigError(f"atol={cfg.atol!r}; give a positive tolerance such as 1e-4.")
    if cfg.max_length is not None and not _whole(cfg.max_length):
        raise ConfigError(f"max_length={cfg.max_length!r}; give a whole number of tokens, or None for the model's.")
    if cfg.max_length is not None and cfg.max_length < MIN_MAX_LENGTH:
        raise ConfigError(f"max_length={cfg.max_length} is too small; give at least {MIN_MAX_LENGTH}.")
    if not (_whole(cfg.timing_rounds) and cfg.timing_rounds >= 1):
        raise ConfigError(f"timing_rounds={cfg.timing_rounds!r}; give a positive whole number such as 15.")
    if not isinstance(cfg.task, str):
        raise ConfigError(f"task={cfg.task!r}; give a task name or 'auto'.")
    return cfg


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
