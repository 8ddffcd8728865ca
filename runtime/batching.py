"""Batching: how a call's texts are grouped into forward passes, and what one call may ask for.

Texts are sorted by length (longest first) and each batch is padded only to its own longest text,
bounded by a size and a padded-token budget; callers restore the input order. Used by the pipelines,
the quantizer's calibration and evaluation, and the benchmarks' PyTorch/ORT reference runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgebert.errors import ConfigError


@dataclass(frozen=True)
class BatchLimits:
    """How calls are split into batches, and what one call may ask for.

    ``max_batch_size`` and ``max_batch_tokens`` (padded batch x sequence) bound one forward pass;
    ``max_call_texts``, ``max_call_chars`` (checked before tokenizing: tokenizing a huge string is
    itself the big allocation) and ``max_call_tokens`` bound one call and raise :class:`LimitError`.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 16_384
    max_call_texts: int = 100_000
    max_call_tokens: int = 10_000_000
    max_call_chars: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_call_texts", "max_call_tokens", "max_call_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"BatchLimits.{name}={value!r}; it must be a positive integer.")


def plan_batches(lengths: Sequence[int], limits: BatchLimits) -> list[list[int]]:
    """Group item indices into batches: longest first, each batch bounded by size and padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, lengths[i])
        width = max(longest, n)
        if current and (
            len(current) + 1 > limits.max_batch_size or width * (len(current) + 1) > limits.max_batch_tokens
        ):
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches
