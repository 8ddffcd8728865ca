"""Token classification (NER, POS): entities with character offsets, like transformers' token-classification.

Aggregation strategies follow ``transformers.TokenClassificationPipeline``:
``none`` (one entry per token: entity, score, index, word, start, end), ``simple`` (adjacent tokens with
the same tag grouped: entity_group, score, word, start, end), ``first``/``max``/``average`` (subword
tokens of a word forced to one tag first, then grouped). Long texts under ``long_text="chunk"`` are
stitched token by token: each token's scores come from the window where it has the most context,
then entities are built once over the whole text, so offsets are in the original text and the
overlaps yield no duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from tokenizers import Encoding

from edgebert.errors import BundleError, ConfigError

from .classification import softmax
from .pipeline import Pipeline, checked_options
from .windows import stitch_windows

AGGREGATIONS = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Text -> a list of entities per text (character offsets into the original text)."""

    task: ClassVar[str] = "token-classification"

    def __init__(self, bundle: Any, *, aggregation_strategy: str = "none", **common: Any) -> None:
        self.aggregation_strategy = _check_aggregation(aggregation_strategy)
        super().__init__(bundle, **common)

    def setup(self) -> None:
        labels = self.manifest.labels
        if not labels:
            raise BundleError(f"{self.path}: a token-classification bundle needs labels in its manifest.")
        self.labels: tuple[str, ...] = labels
        tok = self.encoder.tokenizer
        unk = self.manifest.tokenizer.get("unk_token")
        self.unk_id = tok.token_to_id(str(unk)) if unk is not None else None
        self.word_aware = bool(getattr(tok.model, "continuing_subword_prefix", None))

    @checked_options
    def __call__(
        self,
        texts: Any,
        *,
        aggregation_strategy: str | None = None,
        ignore_labels: Sequence[str] | None = None,
    ) -> Any:
        """Entities for a text (a list of dicts) or for a list of texts (a list of lists).

        ``ignore_labels`` defaults to ``["O"]``. Under ``long_text="truncate"`` a cut text's entities
        each carry ``"truncated": True``.
        """
        strategy = _check_aggregation(aggregation_strategy or self.aggregation_strategy)
        ignore = ["O"] if ignore_labels is None else list(ignore_labels)
        items, single = self.prepare(texts)
        if not items:
            return []
        encodings = self.encode_checked(items)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        results = []
        for text, full, windows, outs, cut in zip(items, encodings, per_item, grouped, truncated, strict=True):
            enc, logits = self._stitch(full, windows, outs)
            entities = self._entities(str(text), enc, logits, strategy, ignore)
            if cut:
                entities = [{**e, "truncated": True} for e in entities]
            results.append(entities)
        return results[0] if single else results

    def _stitch(
        self, full: Encoding, windows: list[Encoding], outs: list[dict[str, np.ndarray]]
    ) -> tuple[_Tokens, np.ndarray]:
        if len(windows) == 1:
            return _Tokens.of(windows[0]), outs[0]["logits"]
        mapping = stitch_windows(full, windows, self.stride)
        logits = np.stack([outs[k]["logits"][pos] for k, pos in mapping])
        return _Tokens.of(full), logits

    def _entities(
        self, text: str, enc: _Tokens, logits: np.ndarray, strategy: str, ignore: list[str]
    ) -> list[dict[str, Any]]:
        scores = softmax(logits.astype(np.float32))
        pre = self._pre_entities(text, enc, scores)
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = int(p["scores"].argmax())
                entities.append(
                    {
                        "entity": self.labels[best],
                        "score": float(p["scores"][best]),
                        "index": p["index"],
                        "word": p["word"],
                        "start": p["start"],
                        "end": p["end"],
                    }
                )
        else:
            entities = self._aggregate_words(pre, strategy)
        if strategy != "none":
            entities = self._group(entities)
        return [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore]

    def _pre_entities(self, text: str, enc: _Tokens, scores: np.ndarray) -> list[dict[str, Any]]:
        pre = []
        for idx, token_scores in enumerate(scores):
            if enc.special[idx]:
                continue
            word = enc.tokens[idx]
            start, end = enc.offsets[idx]
            ref = text[start:end]
            if self.word_aware:
                is_subword = len(word) != len(ref)
            else:
                is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            if enc.ids[idx] == self.unk_id:
                word, is_subword = ref, False
            pre.append(
                {
                    "word": word,
                    "scores": token_scores,
                    "start": start,
                    "end": end,
                    "index": idx,
                    "is_subword": is_subword,
                }
            )
        return pre

    def _tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self.encoder.tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def _aggregate_word(self, group: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda e: e["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([e["scores"] for e in group]), axis=0)
        best = int(scores.argmax())
        return {
            "entity": self.labels[best],
            "score": float(scores[best]),
            "word": self._tokens_to_string([e["word"] for e in group]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }

    def _aggregate_words(self, pre: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        words: list[dict[str, Any]] = []
        group: list[dict[str, Any]] = []
        for p in pre:
            if group and not p["is_subword"]:
                words.append(self._aggregate_word(group, strategy))
                group = []
            group.append(p)
        if group:
            words.append(self._aggregate_word(group, strategy))
        return words

    def _group(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        current: list[dict[str, Any]] = []
        for e in entities:
            if current:
                bi, tag = _tag(e["entity"])
                _, last_tag = _tag(current[-1]["entity"])
                if not (tag == last_tag and bi != "B"):
                    groups.append(self._group_one(current))
                    current = []
            current.append(e)
        if current:
            groups.append(self._group_one(current))
        return groups

    def _group_one(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in entities])),
            "word": self._tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }


class _Tokens:
    """The per-token fields of an encoding that entity building needs."""

    __slots__ = ("ids", "offsets", "special", "tokens")

    def __init__(self, ids: list[int], tokens: list[str], offsets: list[tuple[int, int]], special: list[int]) -> None:
        self.ids, self.tokens, self.offsets, self.special = ids, tokens, offsets, special

    @classmethod
    def of(cls, enc: Encoding) -> _Tokens:
        return cls(list(enc.ids), list(enc.tokens), list(enc.offsets), list(enc.special_tokens_mask))


def _tag(name: str) -> tuple[str, str]:
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def _check_aggregation(strategy: str) -> str:
    if strategy not in AGGREGATIONS:
        raise ConfigError(f"aggregation_strategy={strategy!r}; choose one of {', '.join(AGGREGATIONS)}.")
    return strategy
