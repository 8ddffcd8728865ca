"""Tokenization with the bundle's ``tokenizer.json`` and conversion to ONNX Runtime feeds."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from edgebert.errors import BundleError, InputError

from .bundle import MAX_TOKENIZER_BYTES
from .manifest import Manifest

TextInput = str | tuple[str, str]


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a ``tokenizer.json`` with padding and truncation disabled (edgebert does both itself)."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: tokenizer.json is missing. Re-export the bundle.")
    if p.stat().st_size > MAX_TOKENIZER_BYTES:
        raise BundleError(f"{p}: tokenizer.json is larger than {MAX_TOKENIZER_BYTES} bytes; refusing to read it.")
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise BundleError(f"{p}: not a valid tokenizers JSON file ({e}). Re-export the bundle.") from e
    tok.no_padding()
    tok.no_truncation()
    return tok


def normalize_inputs(inputs: Any, *, allow_pairs: bool) -> tuple[list[TextInput], bool]:
    """Check pipeline input; return (list of texts or pairs, whether a single item was given).

    Accepts a string, a (text, text_pair) tuple, or a list of either.
    """
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
        _check_pair_allowed(allow_pairs)
        return [(inputs[0], inputs[1])], True
    if isinstance(inputs, (bytes, bytearray)):
        raise InputError("got bytes; decode them first, e.g. data.decode('utf-8').")
    if inputs is None or not isinstance(inputs, (list, tuple)):
        raise InputError(
            f"expected a string, a (text, text_pair) tuple or a list of them; got {type(inputs).__name__}."
        )
    out: list[TextInput] = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            out.append(item)
        elif (
            isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], str)
        ):
            _check_pair_allowed(allow_pairs)
            out.append((item[0], item[1]))
        else:
            raise InputError(f"item {i} is {type(item).__name__}, not a string or a (text, text_pair) pair of strings.")
    return out, False


def _check_pair_allowed(allow: bool) -> None:
    if not allow:
        raise InputError("this pipeline takes single texts, not (text, text_pair) pairs.")


def as_transformers(items: Sequence[TextInput]) -> list[TextInput]:
    """A pair whose second text is empty is encoded as the first text alone, as transformers does."""
    return [item[0] if isinstance(item, tuple) and not item[1] else item for item in items]


class TextEncoder:
    """Encodes texts into the inputs the bundle's graph declares."""

    def __init__(self, tokenizer: Tokenizer, manifest: Manifest) -> None:
        self.tokenizer = tokenizer
        self.input_names = manifest.inputs
        self.max_length = manifest.max_length
        pad_id = manifest.tokenizer.get("pad_id")
        if pad_id is None:
            pad_id = tokenizer.token_to_id(str(manifest.tokenizer.get("pad_token", "[PAD]"))) or 0
        self.pad_id = int(pad_id)
        # Copies of the tokenizer with truncation on, by (max_length, stride, strategy): the shared
        # tokenizer itself is never toggled, so one encoder is safe to use from several threads.
        self._truncating: dict[tuple[int, int, str], Tokenizer] = {}
        self._lock = threading.Lock()

    def truncating(self, max_length: int, *, stride: int = 0, strategy: str = "longest_first") -> Tokenizer:
        """A copy of the tokenizer that truncates to ``max_length`` tokens (overflow windows overlap by
        ``stride``); built once per setting and cached."""
        key = (max_length, stride, strategy)
        with self._lock:
            tok = self._truncating.get(key)
            if tok is None:
                tok = Tokenizer.from_str(self.tokenizer.to_str())
                tok.no_padding()
                tok.enable_truncation(max_length, stride=stride, strategy=strategy)
                self._truncating[key] = tok
            return tok

    def encode_truncated(self, items: Sequence[TextInput], max_length: int) -> list[Encoding]:
        """Tokenize, cutting every item to ``max_length`` tokens (pairs longest-first, as transformers)."""
        if not items:
            return []
        return list(self.truncating(max_length).encode_batch(as_transformers(items)))

    def encode(self, items: Sequence[TextInput], *, add_special_tokens: bool = True) -> list[Encoding]:
        """Tokenize without truncation (long-text policy is the caller's job)."""
        if not items:
            return []
        try:
            return list(self.tokenizer.encode_batch(as_transformers(items), add_special_tokens=add_special_tokens))
        except Exception as e:
            for i, item in enumerate(items):
                try:
                    for part in (item,) if isinstance(item, str) else item:
                        part.encode("utf-8")
                except UnicodeEncodeError:
                    raise InputError(
                        f"text {i} holds a lone surrogate (e.g. '\\ud800'), which is not valid unicode; "
                        "clean it, or decode your bytes with errors='replace'."
                    ) from e
            raise InputError(f"the tokenizer rejected the input ({e}).") from e

    def feeds(self, encodings: Sequence[Encoding], length: int | None = None) -> dict[str, np.ndarray]:
        """Pad a batch to its own longest sequence (or ``length``) and build int64 feeds."""
        n = len(encodings)
        seq = length if length is not None else max(len(e.ids) for e in encodings)
        ids = np.full((n, seq), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, seq), dtype=np.int64)
        types = np.zeros((n, seq), dtype=np.int64)
        for i, enc in enumerate(encodings):
            k = len(enc.ids)
            ids[i, :k] = enc.ids
            mask[i, :k] = 1
            types[i, :k] = enc.type_ids
        available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: available[name] for name in self.input_names}
