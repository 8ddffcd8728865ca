"""The ``edgebert`` command: a thin layer over the Python API. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

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
}


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edgebert", description="BERT-family models on the CPU with ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"edgebert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    argv = sys.argv[1:]
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the chosen command's module: `edgebert --help` stays instant
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                raise DependencyError(
                    f"`edgebert {name}` needs extra packages ({e.name} is missing). "
                    f"Install them with: pip install 'edgebert[all]' (torch==2.13.0 first, see README)."
                ) from e
            getattr(module, f"add_{name}_arguments")(p)
            runners[name] = getattr(module, f"run_{name}")
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        parser, runners = _build_parser()
        args = parser.parse_args(sys.argv[1:])
        if args.command is None:
            parser.print_help()
            return 2
        return runners[args.command](args)
    except EdgebertError as e:
        print(f"edgebert: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgebert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
