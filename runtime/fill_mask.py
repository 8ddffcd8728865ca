"""Fill-mask: the most likely tokens for each mask token, like transformers' fill-mask pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from tokenizers import Encoding

from edgebert.errors import BundleError, ConfigError, InputError

from .classification import check_top_k, softmax
from .pipeline import Pipeline, checked_options
from .windows import stitch_windows

_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


class FillMaskPipeline(Pipeline):
    """Text with the mask token -> ``[{"score", "token", "token_str", "sequence"}, ...]`` (``top_k`` best).

    A text with one mask gives a list of candidates; with several masks, a list per mask. A list of
    texts gives a list of those. A text without the mask token is an :class:`InputError`. Long texts:
    "chunk" predicts each mask from the window where it has the most context; "truncate" predicts
    only masks inside the first window (each candidate says ``"truncated": True``).
    """

    task: ClassVar[str] = "fill-mask"

    def __init__(self, bundle: Any, **common: Any) -> None:
        self._default_limits = common.get("limits") is None
        super().__init__(bundle, **common)

    def setup(self) -> None:
        record = self.manifest.tokenizer
        tok = self.encoder.tokenizer
        self.mask_token = str(record.get("mask_token") or "[MASK]")
        mask_id = record.get("mask_id")
        self.mask_id = int(mask_id) if mask_id is not None else tok.token_to_id(self.mask_token)
        if self.mask_id is None:
            raise BundleError(f"{self.path}: the tokenizer has no mask token; this is not a fill-mask bundle.")
        self.cleanup = bool(record.get("clean_up_tokenization_spaces", False))
        if self._default_limits:
            # One batch's logits are (tokens x vocabulary) floats: keep them near 256 MB by default.
            vocab = self.engine.output_width("logits") or tok.get_vocab_size()
            budget = max(self.max_length, (256 << 20) // (4 * max(1, vocab)))
            self.limits = dataclasses.replace(self.limits, max_batch_tokens=min(self.limits.max_batch_tokens, budget))

    @checked_options
    def __call__(self, texts: Any, *, top_k: int = 5, targets: Sequence[str] | str | None = None) -> Any:
        top_k = int(check_top_k(top_k, allow_none=False) or 1)
        target_ids = self._target_ids(targets)
        if target_ids is not None:
            top_k = min(top_k, len(target_ids))
        items, single = self.prepare(texts)
        if not items:
            return []
        encodings = self.encoder.encode(items)
        for i, enc in enumerate(encodings):
            if self.mask_id not in enc.ids:
                raise InputError(
                    f"text {i} holds no mask token; put {self.mask_token} where the word to predict goes, "
                    f"e.g. 'Paris is the {self.mask_token} of France.'"
                )
        self.check_call_tokens(encodings)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item, reduce=self._keep_masks)
        results = []
        for i, (full, windows, outs, cut) in enumerate(zip(encodings, per_item, grouped, truncated, strict=True)):
            ids, logits = self._stitch(full, windows, outs)
            positions = sorted(logits)
            if not positions:
                raise InputError(
                    f"text {i}: every mask token lies beyond the model's {self.max_length} tokens; "
                    "move it earlier or use long_text='chunk'."
                )
            rows = [self._candidates(ids, logits[p], p, top_k, target_ids, len(positions) == 1) for p in positions]
            if cut:
                rows = [[{**c, "truncated": True} for c in row] for row in rows]
            results.append(rows[0] if len(rows) == 1 else rows)
        return results[0] if single else results

    def _keep_masks(self, enc: Encoding, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep only the mask positions' logits of a window (the rest is never needed)."""
        positions = np.array([p for p, t in enumerate(enc.ids) if t == self.mask_id], dtype=np.int64)
        return {"positions": positions, "logits": np.array(outputs["logits"][positions])}

    def _stitch(
        self, full: Encoding, windows: list[Encoding], outs: list[dict[str, np.ndarray]]
    ) -> tuple[list[int], dict[int, np.ndarray]]:
        """The ids whose masks are predicted, and each mask position's logits."""

        def rows(k: int) -> dict[int, np.ndarray]:
            return {int(p): outs[k]["logits"][j] for j, p in enumerate(outs[k]["positions"])}

        if len(windows) == 1:
            return list(windows[0].ids), rows(0)
        mapping = stitch_windows(full, windows, self.stride)
        per_window = [rows(k) for k in range(len(windows))]
        logits = {}
        for p, t in enumerate(full.ids):
            if t == self.mask_id:
                k, pos = mapping[p]
                logits[p] = per_window[k][pos]
        return list(full.ids), logits

    def _candidates(
        self, ids: list[int], logits: np.ndarray, position: int, top_k: int, target_ids: np.ndarray | None, single: bool
    ) -> list[dict[str, Any]]:
        probs = softmax(logits.astype(np.float32))
        if target_ids is not None:
            probs = probs[target_ids]
        order = np.argsort(-probs, kind="stable")[:top_k]
        out = []
        for k in order:
            token = int(target_ids[k]) if target_ids is not None else int(k)
            filled = list(ids)
            filled[position] = token
            filled = [t for t in filled if t != self.encoder.pad_id]
            out.append(
                {
                    "score": float(probs[k]),
                    "token": token,
                    "token_str": self._decode([token], skip_special_tokens=False),
                    "sequence": self._decode(filled, skip_special_tokens=single),
                }
            )
        return out

    def _decode(self, ids: list[int], *, skip_special_tokens: bool) -> str:
        text: str = self.encoder.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.cleanup:
            for a, b in _CLEANUPS:
                text = text.replace(a, b)
        return text

    def _target_ids(self, targets: Sequence[str] | str | None) -> np.ndarray | None:
        if targets is None:
            return None
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise ConfigError("targets must be a string or a list of strings (vocabulary tokens).")
        tok = self.encoder.tokenizer
        ids = []
        for t in targets:
            tid = tok.token_to_id(t)
            if tid is None:
                pieces = tok.encode(t, add_special_tokens=False).ids
                if not pieces:
                    continue
                tid = pieces[0]
            ids.append(tid)
        if not ids:
            raise InputError(f"none of the targets {list(targets)} is in the model's vocabulary.")
        return np.array(sorted(set(ids)), dtype=np.int64)
