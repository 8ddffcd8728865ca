"""The house rules, checked on the source (ast): small rooms, one-way imports, one place for each fact.

Each rule is a function that returns the violations it finds, so that a test can also prove the rule
fires on a made-up violation (a rule that can never fail would be a test that asserts nothing).
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgebert.errors as errors_module
from edgebert.runtime.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
# folders mapped into the package
SHIPPED = ("edgebert", "runtime", "export", "quantize", "benchmarks", "serve", "batch")
ALL_CODE = (*SHIPPED, "tests", "scripts")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# folder -> packages its modules must never import (imports flow one way: export/quantize -> runtime)
FORBIDDEN_IMPORTS = {
    "runtime": ("edgebert.export", "edgebert.quantize", "edgebert.benchmarks", "torch", "transformers",
                "optimum", "onnx", "openvino", "ray", "starlette", "fastapi", "uvicorn"),
    "export": ("edgebert.quantize", "edgebert.benchmarks"),
    "quantize": ("edgebert.export", "edgebert.benchmarks", "torch", "transformers"),
    "serve": ("edgebert.export", "edgebert.quantize", "edgebert.benchmarks", "torch", "transformers"),
    "batch": ("edgebert.export", "edgebert.quantize", "edgebert.benchmarks", "torch", "transformers", "starlette"),
}
# An engine module imports its own engine library (and only it): (file, package).
ALLOWED_IMPORTS = {("runtime/engines/openvino.py", "openvino")}
BUILTIN_ERRORS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
# Raised by protocol, or caught and converted before reaching the user: (file, function, exception).
ALLOWED_RAISES = {
    ("edgebert/__init__.py", "__getattr__", "AttributeError"),  # the module __getattr__ protocol
    ("runtime/writer.py", "_exchange", "OSError"),  # staging_dir turns it into a StorageError
}


def _modules(folders: tuple[str, ...]) -> Iterator[tuple[str, Path, ast.Module]]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "results" in path.parts:
                continue
            yield folder, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ------------------------------------------------------------------------------------------ the rules
def long_modules(tree: ast.Module, path: Path) -> list[str]:
    lines = max((getattr(n, "end_lineno", 0) or 0 for n in ast.walk(tree)), default=0)
    return [f"{_rel(path)}: {lines} lines"] if lines > MAX_MODULE_LINES else []


def long_functions(tree: ast.Module, path: Path) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{_rel(path)}:{node.lineno} {node.name}() is {length} lines")
    return out


def imported_names(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def wrong_way_imports(tree: ast.Module, path: Path, folder: str) -> list[str]:
    banned = [b for b in FORBIDDEN_IMPORTS.get(folder, ()) if (_rel(path), b) not in ALLOWED_IMPORTS]
    return [
        f"{_rel(path)}:{line} imports {name}"
        for line, name in imported_names(tree)
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


def hand_made_sessions(tree: ast.Module, path: Path) -> list[str]:
    """``InferenceSession(...)`` outside the engine seam."""
    if "engines" in path.parts:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "InferenceSession":
                out.append(f"{_rel(path)}:{node.lineno} builds an InferenceSession")
    return out


def task_comparisons(tree: ast.Module, path: Path) -> list[str]:
    """``task == "sequence-classification"``-style branches: per-task facts belong in the registry."""
    if path.name == "tasks.py":
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            consts = [c for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
            consts += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts
                       if isinstance(e, ast.Constant)]
            if any(c.value in TASK_NAMES for c in consts):
                out.append(f"{_rel(path)}:{node.lineno} compares with a task name")
    return out


def foreign_raises(tree: ast.Module, path: Path) -> list[str]:
    """``raise ValueError(...)`` (any built-in exception) or the bare ``EdgebertError(...)``: callers get a
    specific EdgebertError subclass. Private exception classes caught inside a module are not flagged."""
    out = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            if name not in BUILTIN_ERRORS | {"EdgebertError"} or name == "NotImplementedError":
                continue
            if (_rel(path), func.name, name) not in ALLOWED_RAISES:
                out.append(f"{_rel(path)}:{node.lineno} {func.name}() raises {name}")
    return sorted(set(out))


def foreign_warnings(tree: ast.Module, path: Path) -> list[str]:
    """``warnings.warn(message, X)`` where X is not an EdgebertWarning subclass."""
    ours = {n for n in errors_module.__all__ if n.endswith("Warning")}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn":
            category = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "category"), None)
            name = getattr(category, "id", getattr(category, "attr", None))
            if name not in ours:
                out.append(f"{_rel(path)}:{node.lineno} warns with {name}")
    return out


# ------------------------------------------------------------------------------------------ the tests
def test_small_modules_and_functions() -> None:
    found = [v for _, p, t in _modules(ALL_CODE) for v in long_modules(t, p) + long_functions(t, p)]
    assert not found, "\n".join(found)


def test_imports_flow_one_way() -> None:
    found = [v for folder, p, t in _modules(SHIPPED) for v in wrong_way_imports(t, p, folder)]
    assert not found, "\n".join(found)


def test_sessions_are_created_only_by_the_engine_seam() -> None:
    found = [v for _, p, t in _modules((*SHIPPED, "scripts")) for v in hand_made_sessions(t, p)]
    assert not found, "\n".join(found)


def test_task_facts_live_in_the_registry() -> None:
    found = [v for _, p, t in _modules(SHIPPED) for v in task_comparisons(t, p)]
    assert not found, "\n".join(found)


def test_errors_and_warnings_are_edgebert_ones() -> None:
    found = [v for _, p, t in _modules(SHIPPED) for v in foreign_raises(t, p) + foreign_warnings(t, p)]
    assert not found, "\n".join(found)


def test_no_fixtures_or_research_scripts_in_the_package() -> None:
    names = {p.name for folder in SHIPPED for p in (ROOT / folder).rglob("*.py")}
    assert not names & {"tiny.py", "measure_fusion.py", "measure.py", "_measure_runtime.py"}
    mains = [_rel(p) for folder in ("runtime", "export", "quantize") for p in (ROOT / folder).rglob("*.py")
             if "__main__" in p.read_text(encoding="utf-8")]
    assert not mains, f"scripts inside the library: {mains}"


BAD = '''
import torch
from edgebert.quantize import quantize_model
import onnxruntime as ort


def f(task):
    if task == "fill-mask":
        raise ValueError("no")
    raise EdgebertError("bare")
    warnings.warn("x", UserWarning)
    return ort.InferenceSession("m.onnx")
''' + "\n".join(f"x{i} = {i}" for i in range(400))


@pytest.mark.parametrize(
    "rule",
    [
        lambda t, p: long_modules(t, p),
        lambda t, p: wrong_way_imports(t, p, "runtime"),
        lambda t, p: hand_made_sessions(t, p),
        lambda t, p: task_comparisons(t, p),
        lambda t, p: foreign_raises(t, p),
        lambda t, p: foreign_warnings(t, p),
        lambda t, p: long_functions(ast.parse("def g():\n" + "    x = 1\n" * 70), p),
    ],
    ids=["module", "imports", "sessions", "tasks", "raises", "warnings", "function"],
)
def test_each_rule_fires_on_a_violation(rule) -> None:  # type: ignore[no-untyped-def]
    assert rule(ast.parse(BAD), ROOT / "runtime" / "bad.py")
