"""Parity at export: PyTorch and ONNX Runtime on the same probe batch, padding masked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Encoding

from edgebert.errors import ParityError
from edgebert.runtime.tokenize import TextEncoder, TextInput

PROBE_TEXTS: tuple[TextInput, ...] = (
    "Hello world!",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn, then naps.",
    "naïve café in Zürich — São Paulo, Kraków; 東京と北京 🙂 emoji and ÅÄÖ accents.",
    "ok",
    ("How tall is the tower?", "The tower, finished in 1889, is 330 metres tall and stands in Paris."),
)
GOLDEN_PROBES = 3  # how many of the probes (after the first) are stored in the manifest
LONG_FILLER = "edge models run fast on small devices while keeping quality high "


@dataclass(frozen=True)
class ParityReport:
    """Max abs diff (padding masked) and cosine per output, over every probe."""

    max_abs_diff: dict[str, float]
    min_cosine: dict[str, float]
    atol: float
    probes: int
    max_length_probe: int

    def to_json(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "min_cosine": self.min_cosine,
            "atol": self.atol,
            "probes": self.probes,
            "max_length_probe_tokens": self.max_length_probe,
            "passed": True,
        }


def long_probe(encoder: TextEncoder, max_length: int) -> Encoding:
    """An encoding of exactly ``max_length`` tokens (special tokens included)."""
    words = LONG_FILLER * (max_length // 4 + 8)
    return encoder.encode_truncated([words], max_length)[0]


def encode_probes(encoder: TextEncoder, items: Sequence[TextInput], max_length: int) -> list[Encoding]:
    """Encode the probe texts truncated to ``max_length`` tokens (a model with short positions, or a
    small ``max_length`` override, must not see longer inputs than the bundle will ever feed it)."""
    return encoder.encode_truncated(list(items), max_length)


def item_outputs(
    outputs: Mapping[str, np.ndarray], row: int, length: int, per_token: Callable[[str], bool]
) -> dict[str, np.ndarray]:
    """One item's outputs: its row, and for per-token outputs only its ``length`` real tokens."""
    return {k: (v[row, :length] if per_token(k) else v[row]) for k, v in outputs.items()}


@dataclass(frozen=True)
class ProbeSet:
    """The parity inputs: the probe texts as one padded batch, and one probe of exactly max_length tokens."""

    lengths: tuple[int, ...]
    batch_feeds: dict[str, np.ndarray]
    long_feeds: dict[str, np.ndarray]
    long_length: int

    @property
    def count(self) -> int:
        return len(self.lengths) + 1


def make_probes(encoder: TextEncoder, max_length: int) -> ProbeSet:
    encs = encode_probes(encoder, PROBE_TEXTS, max_length)
    long_enc = long_probe(encoder, max_length)
    return ProbeSet(
        lengths=tuple(len(e.ids) for e in encs),
        batch_feeds=encoder.feeds(encs),
        long_feeds=encoder.feeds([long_enc]),
        long_length=len(long_enc.ids),
    )


def run_probes(
    probes: ProbeSet, run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]], per_token: Callable[[str], bool]
) -> list[dict[str, np.ndarray]]:
    """Per-item outputs (padding sliced off) of ``run`` (PyTorch or an engine) on the batch, then the long probe."""
    rows = [(run(probes.batch_feeds), probes.lengths), (run(probes.long_feeds), (probes.long_length,))]
    return [item_outputs(outs, i, n, per_token) for outs, lengths in rows for i, n in enumerate(lengths)]


def compare(
    reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]], atol: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Per output, the max abs diff and the min cosine over items (arrays already padding-sliced)."""
    diffs: dict[str, float] = {}
    cosines: dict[str, float] = {}
    for ref, cand in zip(reference, candidate, strict=True):
        for name, r in ref.items():
            c = cand[name]
            if r.shape != c.shape:
                raise ParityError(f"output {name!r}: shape {c.shape} from ONNX Runtime, {r.shape} from PyTorch.")
            diff = float(np.max(np.abs(r.astype(np.float64) - c))) if r.size else 0.0
            if not np.isfinite(diff):
                diff = float("inf")
            diffs[name] = max(diffs.get(name, 0.0), diff)
            a, b = r.ravel().astype(np.float64), c.ravel().astype(np.float64)
            denom = float(np.linalg.norm(a) * np.linalg.norm(b))
            cos = float(a @ b / denom) if denom > 0 else 1.0
            cosines[name] = min(cosines.get(name, 1.0), cos)
    return diffs, cosines


def check(diffs: dict[str, float], atol: float, what: str) -> None:
    """Raise :class:`ParityError` (naming ``what``) when any output differs from PyTorch by more than ``atol``."""
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        lines = ", ".join(f"{k}: max abs diff {v:.3g}" for k, v in diffs.items())
        raise ParityError(
            f"{what} does not match PyTorch within atol={atol:g} ({lines}). The bundle was not written. "
            "If the model is known to be numerically sensitive, raise the tolerance (--atol), or try "
            "--optimize none to rule out a faulty fusion.",
            report=diffs,
        )
