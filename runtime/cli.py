"""``edgebert run BUNDLE TEXT ...``: run a bundle on texts from arguments, a file or stdin.

What a task takes (text pairs, question + context) is read from the task registry
(:mod:`edgebert.runtime.tasks`); how each task's pipeline is called and how one result is printed is
one :class:`Runner` per task in :data:`RUNNERS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from edgebert.errors import ConfigError, InputError

from .artifacts import engine_names
from .bundle import read_manifest
from .tasks import TASKS, Task, get_task

Call = Callable[[Any, list[Any], argparse.Namespace], tuple[list[Any], list[bool] | None]]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert run``."""
    parser.add_argument("bundle", help="bundle directory (from `edgebert export` or `edgebert quantize`)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", default=[],
                        help="texts to run; '-' reads stdin, one text per line (so does piping text in with "
                             "no TEXT and no --input)")
    parser.add_argument("--input", "-i", metavar="FILE", help="read texts from FILE, one per line ('-' for stdin)")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="each text is 'first<TAB>second' (a text pair; for question answering 'question<TAB>context')",
    )
    parser.add_argument("--question", "-q", help="question answering: ask this question of every text (the contexts)")
    parser.add_argument("--query", help="rerank: rank the texts (the documents) for this query, best first")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input (JSON lines)")
    parser.add_argument("--top-k", type=int, default=None, help="how many labels/answers/tokens to return")
    parser.add_argument(
        "--aggregation",
        default=None,
        choices=("none", "simple", "first", "average", "max"),
        help="token classification: how to group tokens into entities (default: simple)",
    )
    parser.add_argument(
        "--long-text",
        choices=("truncate", "chunk", "error"),
        default=None,
        help="texts longer than the model's maximum: truncate (warn), chunk (sliding windows) or error",
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: CPUs available)")
    parser.add_argument("--engine", default="auto", choices=engine_names(),
                        help="inference engine (default auto: the bundle's fastest artifact whose engine is installed)")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the bundle's checksums")
    parser.add_argument(
        "--similarity", action="store_true", help="embedding bundles: print the cosine-similarity matrix of the texts"
    )


# ----------------------------------------------------------------------------- one runner per task
@dataclass(frozen=True)
class Runner:
    """How ``edgebert run`` calls one task's pipeline and prints one result.

    ``call(pipe, items, args)`` returns the results and, for tasks whose results cannot carry a mark,
    which inputs were truncated (else None). ``human(result)`` is the text after the TAB; ``as_json``
    the keys of the JSON line besides "text". ``flags`` are the task-specific flags the task accepts.
    """

    call: Call
    human: Callable[[Any], str]
    as_json: Callable[[Any], dict[str, Any]]
    flags: tuple[str, ...] = ()


def _embed(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    vectors, truncated = pipe.embed_with_flags(items)
    return list(vectors), truncated


def _extract(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    states, truncated = pipe.extract_with_flags(items)
    return list(states), truncated


def _classify(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    return list(pipe(items, top_k=args.top_k or 1)), None


def _entities(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    return list(pipe(items, aggregation_strategy=args.aggregation or "simple")), None


def _answer(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    return list(pipe(items, top_k=args.top_k or 1)), None


def _fill(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    return list(pipe(items, top_k=args.top_k or 5)), None


def _score(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    return [float(x) for x in pipe.predict(items)], None


def _sparse(pipe: Any, items: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[bool] | None]:
    rows = pipe(items, top_k=args.top_k)
    return [{**r, "tokens": pipe.decode(r["indices"])} for r in rows], None


def _show_sparse(result: dict[str, Any], shown: int = 8) -> str:
    terms = ", ".join(f"{t} {v:.3f}" for t, v in zip(result["tokens"][:shown], result["values"][:shown], strict=False))
    return f"{terms}{', ...' if len(result['tokens']) > shown else ''} ({len(result['tokens'])} terms)"


def _sparse_json(result: dict[str, Any]) -> dict[str, Any]:
    return {"indices": [int(i) for i in result["indices"]], "values": [float(v) for v in result["values"]],
            "tokens": result["tokens"]}


def _show_vector(vec: np.ndarray) -> str:
    head = ", ".join(f"{x:.4f}" for x in vec[:6])
    return f"[{head}, ...] ({vec.shape[0]} dims)"


def _show_labels(result: Any) -> str:
    rows = _rows(result)
    return ", ".join(f"{r['label']} {r['score']:.4f}" for r in rows) + _cut(rows)


def _show_entities(result: list[dict[str, Any]]) -> str:
    if not result:
        return "(no entities)"
    return "; ".join(
        f"{e.get('entity_group', e.get('entity'))} {e['word']!r} [{e['start']}:{e['end']}] {e['score']:.3f}"
        for e in result
    ) + _cut(result)


def _show_answers(result: Any) -> str:
    rows = _rows(result)
    return "; ".join(f"{r['answer']!r} [{r['start']}:{r['end']}] {r['score']:.4f}" for r in rows) + _cut(rows)


def _show_tokens(result: list[Any]) -> str:
    masks = result if result and isinstance(result[0], list) else [result]
    return " | ".join(", ".join(f"{c['token_str']} {c['score']:.4f}" for c in row) for row in masks)


def _rows(result: Any) -> list[dict[str, Any]]:
    return result if isinstance(result, list) else [result]


def _cut(rows: list[dict[str, Any]]) -> str:
    return " (truncated)" if any(r.get("truncated") for r in rows) else ""


def _result_json(result: Any) -> dict[str, Any]:
    return {"result": result}


RUNNERS: dict[str, Runner] = {
    "embedding": Runner(_embed, _show_vector, lambda v: {"embedding": [float(x) for x in v]}, flags=("--similarity",)),
    "feature-extraction": Runner(
        _extract, lambda s: f"{s.shape[0]} tokens x {s.shape[1]}", lambda s: {"last_hidden_state": s.tolist()}
    ),
    "sequence-classification": Runner(_classify, _show_labels, _result_json, flags=("--top-k",)),
    "token-classification": Runner(_entities, _show_entities, _result_json, flags=("--aggregation",)),
    "question-answering": Runner(_answer, _show_answers, _result_json, flags=("--top-k",)),
    "fill-mask": Runner(_fill, _show_tokens, _result_json, flags=("--top-k",)),
    "rerank": Runner(_score, lambda x: f"{x:.6f}", lambda x: {"score": x}, flags=("--top-k",)),
    "sparse-embedding": Runner(_sparse, _show_sparse, _sparse_json, flags=("--top-k",)),
}

# task-specific flag -> whether it was given
_GIVEN: dict[str, Callable[[argparse.Namespace], bool]] = {
    "--top-k": lambda a: a.top_k is not None,
    "--aggregation": lambda a: a.aggregation is not None,
    "--similarity": lambda a: bool(a.similarity),
}


# ----------------------------------------------------------------------------- the command
def run_run(args: argparse.Namespace) -> int:
    """Load the bundle, run it on the texts and print the results; returns the exit code."""
    from . import load

    check_positive(args.threads, "--threads")
    check_positive(args.top_k, "--top-k")
    task = get_task(read_manifest(args.bundle).task)
    runner = RUNNERS[task.name]
    _check_flags(args, task, runner)
    texts = _collect_texts(args)
    items = _items(texts, args, task)
    options: dict[str, Any] = {"engine": args.engine, "threads": args.threads, "verify": not args.no_verify}
    if args.long_text:
        options["long_text"] = args.long_text
    pipe = load(args.bundle, **options)
    out = sys.stdout
    if args.query is not None:
        _print_ranking(pipe.rank(args.query, texts, top_k=args.top_k), texts, args.json, out)
        return 0
    results, truncated = runner.call(pipe, items, args)
    if args.similarity:
        _print_similarity(texts, np.stack(results), args.json, out)
    else:
        for text, result in zip(texts, results, strict=True):
            if args.json:
                _json_line(out, {"text": text, **runner.as_json(result)})
            else:
                out.write(f"{shorten(text)}\t{runner.human(result)}\n")
    cut = [i for i, t in enumerate(truncated or []) if t]
    if cut:
        print(f"edgebert: note: input(s) {', '.join(map(str, cut))} were truncated", file=sys.stderr)
    return 0


def shorten(text: str, keep: int = 60) -> str:
    """An input echoed in the human output: up to ``keep`` characters, then its length (--json keeps it all)."""
    return text if len(text) <= keep + 20 else f"{text[:keep]}… ({len(text)} chars)"


def check_positive(value: int | None, flag: str) -> None:
    """A numeric flag, when given, must be a positive integer."""
    if value is not None and value < 1:
        raise ConfigError(f"{flag} {value}: give a positive integer.")


def _check_flags(args: argparse.Namespace, task: Task, runner: Runner) -> None:
    """Refuse a flag that does not apply to the bundle's task, naming the tasks it is for."""
    for flag, given in _GIVEN.items():
        if given(args) and flag not in runner.flags:
            users = [name for name, r in RUNNERS.items() if flag in r.flags]
            raise ConfigError(f"{flag} is for {', '.join(users)} bundles; {args.bundle} is {task.name}.")
    if args.question is not None and task.input_kind != "question-context":
        users = [t.name for t in TASKS.values() if t.input_kind == "question-context"]
        raise ConfigError(f"--question is for {', '.join(users)} bundles; {args.bundle} is {task.name}.")
    if args.query is not None and task.input_kind != "query-document":
        users = [t.name for t in TASKS.values() if t.input_kind == "query-document"]
        raise ConfigError(f"--query is for {', '.join(users)} bundles; {args.bundle} is {task.name}.")
    if args.query is not None and args.pairs:
        raise ConfigError("--query ranks the texts as documents; --pairs scores 'query<TAB>document' lines. Give one.")
    if args.pairs and not task.pairs:
        users = [t.name for t in TASKS.values() if t.pairs]
        raise ConfigError(f"--pairs is for {', '.join(users)} bundles; {args.bundle} is {task.name} (single texts).")


def _items(texts: list[str], args: argparse.Namespace, task: Task) -> list[Any]:
    """The pipeline's inputs: the texts, text pairs (--pairs) or (question, context) pairs (--question)."""
    if args.question is not None:
        return [(args.question, t) for t in texts]
    if args.pairs:
        return [_split_pair(t, n) for n, t in enumerate(texts)]
    if task.input_kind == "question-context":
        raise InputError(
            f"{task.name} needs --question Q (the texts are contexts) or --pairs (each text 'question<TAB>context')."
        )
    if task.input_kind == "query-document" and args.query is None:
        raise InputError(
            f"{task.name} needs --query Q (the texts are the documents to rank) or --pairs (each text "
            "'query<TAB>document')."
        )
    return list(texts)


def read_lines(stream: Iterable[str]) -> list[str]:
    """One text per line; the line ending is dropped and blank lines are skipped."""
    return [line.rstrip("\r\n") for line in stream if line.strip()]


def _collect_texts(args: argparse.Namespace) -> list[str]:
    sources = [*args.texts, *([args.input] if args.input else [])]
    if sum(s == "-" for s in sources) > 1:
        raise InputError("'-' (stdin) given twice.")
    texts: list[str] = []
    for t in args.texts:
        texts.extend(read_lines(sys.stdin) if t == "-" else [t])
    if args.input:
        texts.extend(read_lines(sys.stdin) if args.input == "-" else _read_file(args.input))
    if not sources and sys.stdin is not None and not sys.stdin.isatty():
        texts = read_lines(sys.stdin)  # text piped in without '-': read it, as the help promises
    if not texts:
        raise InputError("no texts given: pass them as arguments, with --input FILE, or '-' to read stdin.")
    return texts


def _read_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return read_lines(fh)
    except FileNotFoundError:
        raise InputError(f"--input {path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--input {path}: cannot read it as UTF-8 text ({e}).") from e


def _split_pair(text: str, n: int) -> tuple[str, str]:
    parts = text.split("\t")
    if len(parts) != 2:
        raise InputError(f"input {n}: with --pairs every text needs exactly one TAB between its two parts.")
    return parts[0], parts[1]


def _print_similarity(texts: list[str], vectors: np.ndarray, as_json: bool, out: TextIO) -> None:
    v = vectors.astype(np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    if as_json:
        _json_line(out, {"texts": texts, "similarity": [[round(float(x), 6) for x in row] for row in sim]})
        return
    for i, t in enumerate(texts):
        out.write(f"[{i}] {shorten(t)}\n")
    out.write("     " + "".join(f"{f'[{j}]':>8}" for j in range(len(texts))) + "\n")
    for i, row in enumerate(sim):
        out.write(f"{f'[{i}]':<5}" + "".join(f"{x:8.4f}" for x in row) + "\n")


def _print_ranking(ranking: list[dict[str, Any]], texts: list[str], as_json: bool, out: TextIO) -> None:
    """Rerank --query: the documents best first, with their position in the input and their score."""
    for rank, r in enumerate(ranking, 1):
        if as_json:
            _json_line(out, {"rank": rank, "index": r["corpus_id"], "score": r["score"], "text": texts[r["corpus_id"]]})
        else:
            out.write(f"{rank}\t[{r['corpus_id']}]\t{r['score']:.6f}\t{shorten(texts[r['corpus_id']])}\n")


def _json_line(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
