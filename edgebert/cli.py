"""The ``edgebert`` command: a thin layer over the Python API. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .errors import DependencyError, EdgebertError

# subcommand -> (module with add_arguments(parser) and run(args) -> int, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("edgebert.export.cli", "export a Hugging Face model folder to a verified ONNX bundle"),
    "run": ("edgebert.runtime.cli", "run a bundle on texts (arguments, --input FILE or stdin)"),
    "verify": ("edgebert.runtime.verify_cli", "check a bundle's checksums and replay its golden probes"),
    "info": ("edgebert.runtime.verify_cli", "print a bundle's manifest summary"),
    "quantize": ("edgebert.quantize.cli", "make an int8 bundle and report its accuracy against fp32"),
    "optimize": ("edgebert.quantize.optimize_cli",
                 "measure engine x precision candidates on this machine; keep the fastest within an accuracy budget"),
    "bench": ("edgebert.benchmarks.cli", "benchmark a bundle against PyTorch and other variants"),
    "serve": ("edgebert.serve.cli", "serve bundles over HTTP (OpenAI-compatible embeddings, rerank, predict)"),
    "batch": ("edgebert.batch.cli", "run a bundle over files (txt, jsonl, csv, parquet) on every core or on Ray"),
}
# the extra a command needs beyond the core install (named when its import fails)
EXTRAS: dict[str, str] = {"serve": "serve", "batch": "batch"}

# a Python keyword in an error message: name=True, name=False, name='text', name="text" or name=value
_KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=(True|False|'[^']*'|\"[^\"]*\"|[^\s,;)']+)")
# a snake_case option name on its own (not part of a path or a longer name)
_NAME = re.compile(r"(?<![\w/.-])([a-z][a-z0-9]*_[a-z0-9_]+)\b(?![=/.-])")


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]],
                             dict[str, argparse.ArgumentParser]]:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edgebert", description="BERT-family models on the CPU with ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"edgebert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    parsers: dict[str, argparse.ArgumentParser] = {}
    wanted = _command(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the chosen command's module: `edgebert --help` stays instant
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                extra = EXTRAS.get(name)
                how = (f"pip install 'edgebert[{extra}]'" if extra
                       else "pip install 'edgebert[all]' (torch==2.13.0 first, see README)")
                raise DependencyError(
                    f"`edgebert {name}` needs extra packages ({e.name} is missing). Install them with: {how}."
                ) from e
            getattr(module, f"add_{name}_arguments")(p)
            runners[name] = getattr(module, f"run_{name}")
            parsers[name] = p
    return parser, runners, parsers


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument, when it names one (top-level options come before it and exit)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser,
                                        dict[str, Callable[[argparse.Namespace], int]]]:
    """The parsed arguments, the parser that parsed them (the subcommand's, if any) and the runners.

    A subcommand's options and positionals mix freely (``edgebert run B --json "a text"``)."""
    parser, runners, parsers = _build_parser(argv)
    name = _command(argv)
    if name is None:
        return parser.parse_args(list(argv)), parser, runners
    args = parsers[name].parse_intermixed_args(list(argv[1:]))
    args.command = name
    return args, parsers[name], runners


def cli_words(message: str, parser: argparse.ArgumentParser | None) -> str:
    """``message`` with the Python keyword spellings of options that have a flag in ``parser`` replaced by
    the flag: ``force=True`` -> ``--force``, ``long_text='chunk'`` -> ``--long-text chunk``, and a bare
    snake_case option name (``corpus_size must be >= 1``) -> ``--corpus-size``."""
    flags = _flags(parser)

    def swap(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        flag = flags.get(name)
        if flag is None:
            return m.group(0)
        if value == "True":
            return flag
        if value == "False":
            negative = "--no-" + flag[2:]
            return negative if negative in flags.values() else m.group(0)
        return f"{flag} {value.strip(chr(39) + chr(34))}"

    text = _KEYWORD.sub(swap, message)
    text = _NAME.sub(lambda m: flags.get(m.group(1), m.group(0)), text)  # a bare corpus_size -> --corpus-size
    return re.sub(r"(--[a-z0-9-]+) \(\1\)", r"\1", text)  # "force=True (--force)" said the flag twice


def _flags(parser: argparse.ArgumentParser | None) -> dict[str, str]:
    """dest -> long flag, and for --x/--no-x options also "no_x" -> --no-x."""
    out: dict[str, str] = {}
    for action in parser._actions if parser else []:
        longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
        if longs:
            out[action.dest] = longs[0]
            out.update({s[2:].replace("-", "_"): s for s in longs[1:]})
    return out


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings in the CLI: ``edgebert: warning: <message>``, no Python source line."""
    print(f"edgebert: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    shown: Any = warnings.showwarning
    warnings.showwarning = _show_warning
    parser: argparse.ArgumentParser | None = None
    try:
        args, parser, runners = parse(sys.argv[1:])
        if args.command is None:
            parser.print_help()
            return 2
        return runners[args.command](args)
    except EdgebertError as e:
        print(f"edgebert: error: {cli_words(str(e), parser)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgebert: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    raise SystemExit(main())
