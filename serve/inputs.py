"""Request fields -> pipeline inputs, checked: every refusal names the field and what it should be.

``/predict`` reads its ``inputs`` by the bundle's task (:data:`PARSERS`, keyed by task name; a task not
listed falls back on its registry ``input_kind``). JSON has no tuples: a text pair is ``[text, text_pair]``
or ``{"text": ..., "text_pair": ...}``, a question ``{"question": ..., "context": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgebert.errors import InputError
from edgebert.runtime.tokenize import normalize_inputs

from .errors import ApiError, bad, type_name

Parsed = tuple[list[Any], bool]  # the items, and whether a single item (not a list) was given
Parser = Callable[[Any, bool], Parsed]


def check_count(items: list[Any], max_texts: int, param: str) -> None:
    if not items:
        raise bad(f"'{param}' is empty; give at least one text.", param, code="empty_input")
    if len(items) > max_texts:
        raise ApiError(413, f"'{param}' holds {len(items)} items, more than this server's limit of {max_texts} "
                            "per request; split the request.", code="too_many_texts", param=param)


def embedding_input(value: Any) -> Parsed:
    """OpenAI's ``input``: a string or an array of strings (token arrays are refused: send text)."""
    if value is None:
        raise bad("'input' is required: a string or an array of strings.", "input", code="missing_input")
    if isinstance(value, str):
        texts, single = [value], True
    elif isinstance(value, list):
        texts, single = value, False
    else:
        raise bad(f"'input' must be a string or an array of strings, not {type_name(value)}.", "input")
    token_ids = texts and (all(isinstance(t, int) for t in texts)
                           or any(isinstance(t, list) and t and isinstance(t[0], int) for t in texts))
    if token_ids:
        raise bad("'input' holds token ids; this server takes text only: send the strings.", "input")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad(f"input[{i}] is {type_name(text)}; every input must be a string.", "input")
        if not text:
            raise bad(f"input[{i}] is an empty string; give non-empty texts.", "input", code="empty_input")
    return texts, single


def _pairish(x: Any) -> Any:
    """A JSON text pair ([a, b] or {"text", "text_pair"}) as a tuple; anything else unchanged."""
    if isinstance(x, dict):
        if set(x) != {"text", "text_pair"}:
            raise InputError(f"a pair object needs exactly the keys 'text' and 'text_pair'; got {sorted(x)}.")
        return (x["text"], x["text_pair"])
    if isinstance(x, list) and len(x) == 2:
        return tuple(x)
    return x


def texts(value: Any, pairs: bool) -> Parsed:
    """A text, a pair object, or an array of texts/pairs (pairs only where the model takes them).

    A top-level array is always a list of items (``["a", "b"]`` is two texts); inside it, ``[text, text_pair]``
    is a pair.
    """
    given = [_pairish(x) for x in value] if isinstance(value, list) else _pairish(value)
    if not pairs and (isinstance(given, tuple) or (isinstance(given, list) and any(isinstance(x, tuple)
                                                                                 for x in given))):
        raise InputError("this model takes single texts, not [text, text_pair] pairs.")
    return normalize_inputs(given, allow_pairs=pairs)


def questions(value: Any, pairs: bool) -> Parsed:
    """``{"question", "context"}`` or an array of them (``[question, context]`` arrays also work)."""
    def one(x: Any, where: str) -> tuple[str, str]:
        if isinstance(x, dict) and set(x) == {"question", "context"}:
            x = [x["question"], x["context"]]
        if isinstance(x, list) and len(x) == 2 and all(isinstance(s, str) for s in x):
            return (x[0], x[1])
        raise InputError(f"{where} must be {{\"question\": ..., \"context\": ...}} with two strings.")

    if isinstance(value, dict):
        return [one(value, "inputs")], True
    if isinstance(value, list):
        return [one(x, f"inputs[{i}]") for i, x in enumerate(value)], False
    raise InputError(f"inputs must be a {{question, context}} object or an array of them, not {type_name(value)}.")


def pair_list(value: Any, pairs: bool) -> Parsed:
    """Rerank scoring: an array of [query, document] pairs (one pair alone gives one score)."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(s, str) for s in value):
        return [(value[0], value[1])], True
    if not isinstance(value, list):
        raise InputError(f"inputs must be an array of [query, document] pairs, not {type_name(value)}.")
    out = []
    for i, x in enumerate(value):
        x = _pairish(x)
        if not (isinstance(x, tuple) and all(isinstance(s, str) for s in x)):
            raise InputError(f"inputs[{i}] must be a [query, document] pair of strings.")
        out.append(x)
    return out, False


PARSERS: dict[str, Parser] = {
    "embedding": texts,
    "feature-extraction": texts,
    "sparse-embedding": texts,
    "sequence-classification": texts,
    "token-classification": texts,
    "fill-mask": texts,
    "question-answering": questions,
    "rerank": pair_list,
}
BY_INPUT_KIND: dict[str, Parser] = {"question-context": questions, "query-document": pair_list}


def parser_for(task: str, input_kind: str) -> Parser:
    return PARSERS.get(task) or BY_INPUT_KIND.get(input_kind, texts)


def documents(value: Any, param: str) -> list[str]:
    """Rerank documents: strings (Cohere also allows ``{"text": ...}`` objects)."""
    if not isinstance(value, list):
        raise bad(f"'{param}' must be an array of strings, not {type_name(value)}.", param)
    out = []
    for i, d in enumerate(value):
        if isinstance(d, dict) and isinstance(d.get("text"), str):
            d = d["text"]
        if not isinstance(d, str):
            raise bad(f"{param}[{i}] is {type_name(d)}; every document must be a string.", param)
        out.append(d)
    return out


def optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad(f"'{name}' must be a positive integer, not {value!r}.", name)
    return value


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false, not {type_name(value)}.", name)
    return value
