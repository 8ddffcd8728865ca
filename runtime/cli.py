"""``edgebert run BUNDLE TEXT ...``: run a bundle on texts from arguments, a file or stdin."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np

from edgebert.errors import InputError


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert run``."""
    parser.add_argument("bundle", help="bundle directory (from `edgebert export` or `edgebert quantize`)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to run; '-' reads stdin, one text per line")
    parser.add_argument("--input", "-i", metavar="FILE", help="read texts from FILE, one per line ('-' for stdin)")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="each text is 'first<TAB>second' (a text pair; for question answering 'question<TAB>context')",
    )
    parser.add_argument("--question", "-q", help="question answering: ask this question of every text (the contexts)")
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
    parser.add_argument("--no-verify", action="store_true", help="skip checking the bundle's checksums")
    parser.add_argument(
        "--similarity", action="store_true", help="embedding bundles: print the cosine-similarity matrix of the texts"
    )


def read_lines(stream: Iterable[str]) -> list[str]:
    """One text per line; the line ending is dropped and blank lines are skipped."""
    return [line.rstrip("\r\n") for line in stream if line.strip()]


def _collect_texts(args: argparse.Namespace) -> list[str]:
    texts: list[str] = []
    used_stdin = False
    for t in args.texts:
        if t == "-":
            if used_stdin:
                raise InputError("'-' (stdin) given twice.")
            used_stdin = True
            texts.extend(read_lines(sys.stdin))
        else:
            texts.append(t)
    if args.input:
        if args.input == "-":
            if used_stdin:
                raise InputError("'-' (stdin) given twice.")
            texts.extend(read_lines(sys.stdin))
        else:
            try:
                with open(args.input, encoding="utf-8") as fh:
                    texts.extend(read_lines(fh))
            except FileNotFoundError:
                raise InputError(f"--input {args.input}: no such file.") from None
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"--input {args.input}: cannot read it as UTF-8 text ({e}).") from e
    if not texts:
        raise InputError("no texts given: pass them as arguments, with --input FILE, or '-' to read stdin.")
    return texts


def _split_pair(text: str, n: int) -> tuple[str, str]:
    parts = text.split("\t")
    if len(parts) != 2:
        raise InputError(f"input {n}: with --pairs every text needs exactly one TAB between its two parts.")
    return parts[0], parts[1]


def run_run(args: argparse.Namespace) -> int:
    """Load the bundle, run it on the texts and print the results; returns the exit code."""
    from . import load

    texts = _collect_texts(args)
    options: dict[str, Any] = {"threads": args.threads, "verify": not args.no_verify}
    if args.long_text:
        options["long_text"] = args.long_text
    pipe = load(args.bundle, **options)
    task = pipe.manifest.task
    if args.similarity and task != "embedding":
        raise InputError(f"--similarity needs an embedding bundle; {args.bundle} is {task}.")
    items: list[Any] = texts
    if task == "question-answering":
        if args.question is not None:
            items = [(args.question, t) for t in texts]
        elif args.pairs:
            items = [_split_pair(t, n) for n, t in enumerate(texts)]
        else:
            raise InputError(
                "question answering needs --question Q (texts are contexts) or --pairs (question<TAB>context)."
            )
    elif args.pairs:
        items = [_split_pair(t, n) for n, t in enumerate(texts)]
    out = sys.stdout
    if task == "embedding":
        vectors = pipe(items)
        if args.similarity:
            _print_similarity(texts, vectors, args.json, out)
        else:
            for text, vec in zip(texts, vectors, strict=True):
                if args.json:
                    _json_line(out, {"text": text, "embedding": [float(x) for x in vec]})
                else:
                    head = ", ".join(f"{x:.4f}" for x in vec[:6])
                    out.write(f"{text}\t[{head}, ...] ({vec.shape[0]} dims)\n")
        _note_truncated(pipe)
        return 0
    if task == "feature-extraction":
        for text, states in zip(texts, pipe(items), strict=True):
            if args.json:
                _json_line(out, {"text": text, "last_hidden_state": states.tolist()})
            else:
                out.write(f"{text}\t{states.shape[0]} tokens x {states.shape[1]}\n")
        _note_truncated(pipe)
        return 0
    results = _run_task(pipe, task, items, args)
    for text, result in zip(texts, results, strict=True):
        if args.json:
            _json_line(out, {"text": text, "result": result})
        else:
            out.write(f"{text}\t{_human(task, result)}\n")
    return 0


def _run_task(pipe: Any, task: str, items: list[Any], args: argparse.Namespace) -> list[Any]:
    if task == "sequence-classification":
        return list(pipe(items, top_k=args.top_k if args.top_k is not None else 1))
    if task == "token-classification":
        return list(pipe(items, aggregation_strategy=args.aggregation or "simple"))
    if task == "question-answering":
        return list(pipe(items, top_k=args.top_k or 1))
    return list(pipe(items, top_k=args.top_k or 5))


def _human(task: str, result: Any) -> str:
    if task == "sequence-classification":
        rows = result if isinstance(result, list) else [result]
        return ", ".join(f"{r['label']} {r['score']:.4f}" for r in rows) + _cut(rows)
    if task == "token-classification":
        if not result:
            return "(no entities)"
        return "; ".join(
            f"{e.get('entity_group', e.get('entity'))} {e['word']!r} [{e['start']}:{e['end']}] {e['score']:.3f}"
            for e in result
        ) + _cut(result)
    if task == "question-answering":
        rows = result if isinstance(result, list) else [result]
        return "; ".join(f"{r['answer']!r} [{r['start']}:{r['end']}] {r['score']:.4f}" for r in rows) + _cut(rows)
    masks = result if result and isinstance(result[0], list) else [result]
    return " | ".join(", ".join(f"{c['token_str']} {c['score']:.4f}" for c in row) for row in masks)


def _cut(rows: list[dict[str, Any]]) -> str:
    return " (truncated)" if any(r.get("truncated") for r in rows) else ""


def _note_truncated(pipe: Any) -> None:
    cut = [i for i, t in enumerate(getattr(pipe, "last_truncated", [])) if t]
    if cut:
        print(f"edgebert: note: input(s) {', '.join(map(str, cut))} were truncated", file=sys.stderr)


def _print_similarity(texts: list[str], vectors: np.ndarray, as_json: bool, out: TextIO) -> None:
    v = vectors.astype(np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    if as_json:
        _json_line(out, {"texts": texts, "similarity": [[round(float(x), 6) for x in row] for row in sim]})
        return
    for i, t in enumerate(texts):
        out.write(f"[{i}] {t}\n")
    out.write("     " + "".join(f"{f'[{j}]':>8}" for j in range(len(texts))) + "\n")
    for i, row in enumerate(sim):
        out.write(f"{f'[{i}]':<5}" + "".join(f"{x:8.4f}" for x in row) + "\n")


def _json_line(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
