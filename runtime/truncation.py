"""Pair truncation without tokenizers' n x m overflow windows.

Truncating a long (text, text_pair) with ``enable_truncation`` makes tokenizers enumerate every
overflow window of both texts: quadratic (3.5 s for 4,000 words a side). When only the first window
is wanted, cut each text to its longest-first share of the budget and encode the pair once.
"""

from __future__ import annotations

from tokenizers import Encoding, Tokenizer


def longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text tokenizers' LongestFirst strategy keeps (utils/truncation.rs)."""
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    return (n2, n1) if swap else (n1, n2)


def _cut_to(tok: Tokenizer, text: str, n: int) -> str | None:
    """The prefix of ``text`` that tokenizes to its first ``n`` tokens, or None if none does exactly."""
    enc = tok.encode(text, add_special_tokens=False)
    if len(enc.ids) <= n:
        return text
    head = text[: enc.offsets[n][0]]
    return head if tok.encode(head, add_special_tokens=False).ids == enc.ids[:n] else None


def truncate_pair(tok: Tokenizer, a: str, b: str, max_length: int) -> Encoding | None:
    """The pair truncated longest-first as tokenizers would, or None when the fast path does not apply.

    ``tok`` must have truncation disabled. Offsets stay those of the original texts (prefix cuts).
    """
    budget = max_length - tok.num_special_tokens_to_add(True)
    la, lb = (len(tok.encode(t, add_special_tokens=False).ids) for t in (a, b))
    if la + lb <= budget:
        return None
    na, nb = longest_first(la, lb, budget)
    ca, cb = _cut_to(tok, a, na), _cut_to(tok, b, nb)
    if ca is None or cb is None:
        return None
    return tok.encode(ca, cb)
