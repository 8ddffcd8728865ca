"""Extractive question answering: (question, context) -> answer span, like transformers' question-answering.

Contexts longer than the model's window are cut into windows that overlap by ``stride`` tokens
(transformers' ``doc_stride``; default ``min(max_length // 2, 128)``); every window is scored and the
best spans over all windows win, with character offsets into the original context. This is the
default (``long_text="chunk"``); "truncate" scores only the first window and marks the answers
``"truncated": True``; "error" raises :class:`LongTextError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from tokenizers import Encoding

from edgebert.errors import ConfigError, InputError

from .classification import check_top_k
from .pipeline import Pipeline, checked_options


def decode_spans(
    start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int, desired: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top_k`` (start, end) pairs by start x end probability, end >= start, length <= max_answer_len."""
    outer = np.matmul(start[:, None], end[None, :])
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.ravel()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, top_k)[0:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)
    ok = np.isin(starts, desired.nonzero()) & np.isin(ends, desired.nonzero())
    starts, ends = starts[ok], ends[ok]
    return starts, ends, candidates[starts, ends]


class QuestionAnsweringPipeline(Pipeline):
    """``qa(question=..., context=...)`` -> ``{"answer", "score", "start", "end"}``.

    Also accepts ``qa("question", "context")``, a ``{"question", "context"}`` dict, a
    ``(question, context)`` tuple, or a list of dicts/tuples (-> a list of results). ``top_k > 1``
    gives a list of answers per question; ``handle_impossible_answer`` allows the empty answer.
    """

    task: ClassVar[str] = "question-answering"
    truncate_pairs_longest_first: ClassVar[bool] = False  # the question stays whole; only the context is cut

    def default_stride(self, window: int) -> int:
        return min(self.max_length // 2, 128)  # transformers' doc_stride

    def setup(self) -> None:
        cls_token = self.manifest.tokenizer.get("cls_token")
        self.cls_id = self.encoder.tokenizer.token_to_id(str(cls_token)) if cls_token is not None else None

    @checked_options
    def __call__(
        self,
        *args: Any,
        question: str | None = None,
        context: str | None = None,
        top_k: int = 1,
        max_answer_len: int = 15,
        handle_impossible_answer: bool = False,
    ) -> Any:
        pairs, single = _parse_inputs(args, question, context)
        top_k = int(check_top_k(top_k, allow_none=False) or 1)
        if not isinstance(max_answer_len, int) or isinstance(max_answer_len, bool) or max_answer_len < 1:
            raise ConfigError(f"max_answer_len={max_answer_len!r}; give a positive integer.")
        if not pairs:
            return []
        self.check_call_size(pairs)
        items = list(pairs)
        encodings = self.encode_checked(items)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        results = []
        for (_, ctx), windows, outs, cut in zip(pairs, per_item, grouped, truncated, strict=True):
            answers = self._answers(ctx, windows, outs, top_k, max_answer_len, bool(handle_impossible_answer))
            if cut:
                answers = [{**a, "truncated": True} for a in answers]
            results.append(answers[0] if len(answers) == 1 else answers)
        return results[0] if single else results

    def _answers(
        self,
        context: str,
        windows: list[Encoding],
        outs: list[dict[str, np.ndarray]],
        top_k: int,
        max_answer_len: int,
        handle_impossible: bool,
    ) -> list[dict[str, Any]]:
        min_null = 1000000.0
        answers: list[dict[str, Any]] = []
        for enc, out in zip(windows, outs, strict=True):
            # Only context tokens (and [CLS], for the null answer) may be part of the answer.
            desired = np.array([1 if s == 1 else 0 for s in enc.sequence_ids], dtype=np.int64)
            if self.cls_id is not None:
                desired[np.asarray(enc.ids) == self.cls_id] = 1
            masked = desired == 0
            start = np.where(masked, -10000.0, out["start_logits"]).astype(np.float32)
            end = np.where(masked, -10000.0, out["end_logits"]).astype(np.float32)
            start = np.exp(start - start.max())
            start = start / start.sum()
            end = np.exp(end - end.max())
            end = end / end.sum()
            if handle_impossible:
                min_null = min(min_null, float(start[0] * end[0]))
            start[0] = end[0] = 0.0
            starts, ends, scores = decode_spans(start, end, top_k * 2 + 10, max_answer_len, desired)
            for s, e, score in zip(starts, ends, scores, strict=True):
                a, b = _char_span(enc, int(s), int(e))
                text = context[a:b]
                same = next((x for x in answers if x["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += float(score)
                else:
                    answers.append({"score": float(score), "start": a, "end": b, "answer": text})
        if handle_impossible:
            answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
        return [{"answer": x["answer"], "score": x["score"], "start": x["start"], "end": x["end"]} for x in answers]


def _char_span(enc: Encoding, s: int, e: int) -> tuple[int, int]:
    """Character span of tokens s..e in the context, widened to whole words when the tokenizer knows them."""
    fallback = int(enc.offsets[s][0]), int(enc.offsets[e][1])  # token offsets, as transformers does
    try:
        start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
        if start_word is None or end_word is None:
            return fallback
        a_span = enc.word_to_chars(start_word, sequence_index=1)
        b_span = enc.word_to_chars(end_word, sequence_index=1)
    except Exception:  # no word information
        return fallback
    if a_span is None or b_span is None:
        return fallback
    return int(a_span[0]), int(b_span[1])


def _parse_inputs(args: tuple[Any, ...], question: Any, context: Any) -> tuple[list[tuple[str, str]], bool]:
    if question is not None or context is not None:
        if args:
            raise InputError("give the question and context either as keywords or positionally, not both.")
        return [_pair(question, context, "question/context")], True
    if len(args) == 2 and all(isinstance(a, str) for a in args):
        return [_pair(args[0], args[1], "arguments")], True
    if len(args) != 1:
        raise InputError("call qa(question=..., context=...), qa(question, context) or qa([{...}, ...]).")
    inputs = args[0]
    if isinstance(inputs, (Mapping, tuple)):
        return [_item(inputs, 0)], True
    if isinstance(inputs, list):
        return [_item(x, i) for i, x in enumerate(inputs)], False
    raise InputError(
        f"expected a {{'question', 'context'}} dict, a (question, context) tuple or a list of them; "
        f"got {type(inputs).__name__}."
    )


def _item(x: Any, i: int) -> tuple[str, str]:
    if isinstance(x, Mapping):
        if set(x) != {"question", "context"}:
            raise InputError(
                f"item {i}: a dict needs exactly the keys 'question' and 'context'; got {sorted(map(str, x))}."
            )
        return _pair(x["question"], x["context"], f"item {i}")
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return _pair(x[0], x[1], f"item {i}")
    raise InputError(
        f"item {i} is {type(x).__name__}; give a {{'question', 'context'}} dict or a (question, context) pair."
    )


def _pair(q: Any, c: Any, where: str) -> tuple[str, str]:
    for name, v in (("question", q), ("context", c)):
        if isinstance(v, (bytes, bytearray)):
            raise InputError(f"{where}: the {name} is bytes; decode it first, e.g. data.decode('utf-8').")
        if not isinstance(v, str):
            raise InputError(f"{where}: the {name} must be a string, got {type(v).__name__}.")
    if not q.strip():
        raise InputError(f"{where}: the question is empty.")
    if not c:
        raise InputError(f"{where}: the context is empty; give the text to find the answer in.")
    return q, c
