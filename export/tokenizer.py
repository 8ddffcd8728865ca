"""The bundle's tokenizer: a self-contained fast ``tokenizer.json``, checked against transformers."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgebert.errors import ExportError, ModelSourceError, StorageError
from edgebert.runtime.tokenize import TextEncoder

from .parity import PROBE_TEXTS


def _auto_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)


def save_tokenizer(path: Path, dest: Path) -> dict[str, Any]:
    """Write a self-contained fast tokenizer.json (padding/truncation stripped); return its manifest record."""
    try:
        tok = _auto_tokenizer(path)
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


def check_tokenizer_parity(path: Path, encoder: TextEncoder) -> None:
    """The bundle's tokenizer must give the same ids as the transformers tokenizer on every probe text."""
    tok = _auto_tokenizer(path)
    for item in PROBE_TEXTS:
        ours = encoder.encode([item])[0].ids
        theirs = (tok(*item, verbose=False) if isinstance(item, tuple) else tok(item, verbose=False))["input_ids"]
        if list(ours) != list(theirs):
            raise ExportError(f"tokenizer.json gives other ids than the transformers tokenizer for {item!r}.")
