"""Calibration and evaluation texts: reading, checking, splitting and batching into feeds."""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebert.errors import DataError
from edgebert.runtime.batching import BatchLimits, plan_batches
from edgebert.runtime.tokenize import TextEncoder, TextInput

MIN_CALIBRATION_TEXTS = 16
MIN_EVAL_TEXTS = 8
MAX_FILE_BYTES = 256 * 1024 * 1024

# The general calibration set shipped in the package (written for edgebert; see texts/README.md). Used when
# no calibration texts are given: its first part calibrates, the rest is held out for the accuracy report.
PACKAGED_CALIBRATION = "texts/general.txt"
PACKAGED_SOURCE = "edgebert's packaged general calibration set"


@dataclass(frozen=True)
class TextSet:
    """Texts (or pairs) with optional gold labels, and where they came from."""

    items: tuple[TextInput, ...]
    labels: tuple[str, ...] | None
    source: str


def _read_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {what} file not found.")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{p}: {what} file is larger than {MAX_FILE_BYTES} bytes; give a smaller sample.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: {what} file is not UTF-8 text ({e}).") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def packaged_calibration() -> list[str]:
    """The packaged general-domain calibration texts (license-clean, disjoint from any evaluation data)."""
    resource = importlib.resources.files("edgebert.quantize").joinpath(PACKAGED_CALIBRATION)
    lines = [line.strip() for line in resource.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(dict.fromkeys(lines))


def read_calibration(path: str | os.PathLike[str]) -> list[str]:
    """One text per line; at least :data:`MIN_CALIBRATION_TEXTS` non-empty lines."""
    lines = _read_lines(path, "calibration")
    if not lines:
        raise DataError(f"{path}: the calibration file is empty; give one real text per line.")
    unique = list(dict.fromkeys(lines))
    if len(unique) < MIN_CALIBRATION_TEXTS:
        raise DataError(
            f"{path}: only {len(unique)} distinct calibration texts; give at least {MIN_CALIBRATION_TEXTS} "
            "(a few hundred real texts from your domain work best)."
        )
    return unique


def read_eval(path: str | os.PathLike[str], labels: Sequence[str] | None) -> TextSet:
    """An evaluation file: ``label<TAB>text`` lines (labels checked against the model's), or plain texts.

    A file in which every line has a tab is labelled; labels may be names or integer ids.
    """
    lines = _read_lines(path, "evaluation")
    if len(lines) < MIN_EVAL_TEXTS:
        raise DataError(f"{path}: only {len(lines)} evaluation lines; give at least {MIN_EVAL_TEXTS}.")
    if not all("\t" in line for line in lines):
        return TextSet(tuple(lines), None, str(path))
    if not labels:
        raise DataError(f"{path}: the file is labelled (label<TAB>text) but the model has no labels.")
    known = list(labels)
    gold: list[str] = []
    texts: list[str] = []
    unknown: dict[str, int] = {}
    for line in lines:
        label, text = (x.strip() for x in line.split("\t", 1))
        if label not in known and label.isdigit() and int(label) < len(known):
            label = known[int(label)]
        if label not in known:
            unknown[label] = unknown.get(label, 0) + 1
            continue
        if text:
            gold.append(label)
            texts.append(text)
    if unknown:
        shown = ", ".join(f"{k!r} x{v}" for k, v in list(unknown.items())[:5])
        raise DataError(f"{path}: labels the model does not have: {shown}; the model's labels are {known}.")
    if len(texts) < MIN_EVAL_TEXTS:
        raise DataError(f"{path}: only {len(texts)} labelled texts; give at least {MIN_EVAL_TEXTS}.")
    return TextSet(tuple(texts), tuple(gold), str(path))


def split_texts(
    texts: Sequence[str], calibration_size: int, seed: int, *, hold_out: bool = True
) -> tuple[list[str], list[str]]:
    """Shuffle deterministically; the first ``calibration_size`` calibrate, the rest are held out. With
    ``hold_out`` (no separate evaluation set) at least half of the texts are kept for the accuracy report;
    without it every text up to ``calibration_size`` calibrates."""
    order = np.random.default_rng(seed).permutation(len(texts))
    shuffled = [texts[i] for i in order]
    wanted = max(len(texts) // 2, MIN_CALIBRATION_TEXTS) if hold_out else len(texts)
    n = min(calibration_size, wanted, len(texts))
    return shuffled[:n], shuffled[n:]


def disjoint(calibration: Sequence[TextInput], evaluation: TextSet) -> TextSet:
    """The evaluation set without any text used for calibration."""
    seen = set(calibration)
    keep = [i for i, t in enumerate(evaluation.items) if t not in seen]
    items = tuple(evaluation.items[i] for i in keep)
    labels = tuple(evaluation.labels[i] for i in keep) if evaluation.labels is not None else None
    return TextSet(items, labels, evaluation.source)


def check_texts(texts: Sequence[str]) -> list[str]:
    """Calibration texts passed in Python: distinct, non-empty strings, at least :data:`MIN_CALIBRATION_TEXTS`."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise DataError("calibration must be a file path or a list of strings.")
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(unique) < MIN_CALIBRATION_TEXTS:
        raise DataError(f"only {len(unique)} distinct calibration texts; give at least {MIN_CALIBRATION_TEXTS}.")
    return unique


def batches(
    encoder: TextEncoder, items: Sequence[TextInput], *, batch_size: int = 32, max_length: int = 128,
) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """(indices, feeds) over length-sorted batches, each text truncated to ``max_length`` tokens.

    Batches are planned by :func:`edgebert.runtime.batching.plan_batches` (longest first, each padded to
    its own longest text). Static int8 takes its ranges from their real tokens only
    (:mod:`edgebert.quantize.calibrate`), so no batch needs one shape.
    """
    encs = encoder.encode_truncated(list(items), max_length)
    limits = BatchLimits(max_batch_size=batch_size, max_batch_tokens=batch_size * max(1, max_length))
    for idx in plan_batches([len(e.ids) for e in encs], limits):
        yield idx, encoder.feeds([encs[i] for i in idx])
