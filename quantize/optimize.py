"""``optimize_model``: on this machine, the fastest engine x precision of a bundle within an accuracy budget.

1. :func:`prepare`  read the fp32 bundle, the calibration and held-out texts (as ``quantize_model`` does)
2. build           every candidate engine x precision (:mod:`edgebert.quantize.candidates`)
3. :func:`judge`    accuracy of each against fp32 on the held-out texts, and latency on the profile's
                   shapes, interleaved in one process at the thread count the bundle will run with,
                   each timed call right after an untimed one of the same candidate (its weights in
                   the CPU caches, as in an app that runs this one model)
4. :func:`choose`   the fastest candidate within the budget (and the fastest ONNX Runtime one, kept as
                   ``model.onnx`` so the bundle runs where OpenVINO is absent)
5. :func:`write`    the bundle, its ``artifacts`` (the winner first) and the decision table (``autotune``)
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ConfigError, InternalError
from edgebert.runtime.bundle import resolve_member
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.isa import cpu_model, detect_isa
from edgebert.runtime.manifest import MODEL_FILE, TOKENIZER_FILE, Manifest
from edgebert.runtime.tasks import get_task
from edgebert.runtime.timing import interleave, median_ms
from edgebert.runtime.writer import check_output, write_bundle

from . import api, data
from .candidates import ENGINE_NAMES, PRECISIONS, Candidate, Plan, build_candidates
from .config import QuantizationConfig
from .evaluate import Evaluator, eval_items, meets

PROFILES: dict[str, tuple[tuple[int, int], ...]] = {"latency": ((1, 16), (1, 128)), "throughput": ((32, 128),)}
DEFAULT_MIN_COSINE = 0.995  # with the evaluator's slack: min cosine >= 0.98
DEFAULT_MAX_DROP = 0.5  # points, for tasks scored by agreement or accuracy
PROBE_ATOL = {"fp32": 1e-3, "bf16": 2e-2, "int8": 2e-2, "mixed": 2e-2}


@dataclass(frozen=True)
class OptimizeConfig:
    """What ``optimize_model`` measures and the budget it keeps.

    Attributes:
        profile: "latency" (batches of one: 16 and 128 tokens) or "throughput" (32 x 128).
        threads: intra-op threads every candidate is timed with (run the bundle with the same).
        max_accuracy_drop / min_cosine: the accuracy budget; default min_cosine 0.995 (and min over
            texts >= 0.98) for embeddings, else a drop of at most 0.5 points.
        engines / precisions: the candidates to consider.
        rounds: interleaved timing rounds per shape.
        quiet: no progress on stderr.
    """

    profile: str = "latency"
    threads: int = 1
    max_accuracy_drop: float | None = None
    min_cosine: float | None = None
    engines: tuple[str, ...] = ENGINE_NAMES
    precisions: tuple[str, ...] = PRECISIONS
    rounds: int = 20
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"profile={self.profile!r}; choose one of {', '.join(PROFILES)}.")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"threads={self.threads!r}; give a positive integer.")
        for name, allowed in (("engines", ENGINE_NAMES), ("precisions", PRECISIONS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad or not getattr(self, name):
                raise ConfigError(f"{name}={list(getattr(self, name))}; choose from {', '.join(allowed)}.")
        if not isinstance(self.rounds, int) or self.rounds < 3:
            raise ConfigError(f"rounds={self.rounds!r}; give an integer >= 3.")


@dataclass(frozen=True)
class Prepared:
    source: api.Source
    texts: api.Texts
    budget: dict[str, float]
    shapes: list[tuple[str, dict[str, np.ndarray]]]


def optimize_model(
    bundle: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: OptimizeConfig | None = None,
    *,
    calibration: api.Calibration = None,
    eval_data: str | os.PathLike[str] | None = None,
    force: bool = False,
    **overrides: Any,
) -> Manifest:
    """Build, measure and choose; write the chosen bundle at ``out_dir`` and return its manifest.

    ``calibration`` and ``eval_data`` are as for :func:`~edgebert.quantize.quantize_model` (default:
    the packaged general calibration set, its held-out part scores accuracy); ``**overrides`` are
    :class:`OptimizeConfig` fields. Raises what ``quantize_model`` raises; nothing is written on error.
    """
    cfg = dataclasses.replace(config or OptimizeConfig(), **overrides)
    say = api.progress(cfg.quiet, time.perf_counter())
    prep = prepare(bundle, out_dir, cfg, calibration, eval_data, force)
    with tempfile.TemporaryDirectory(prefix="edgebert-optimize-") as work:
        feeds = _calibration_feeds(prep)
        evaluator = _evaluator(prep, cfg.threads)
        plan = Plan(prep.source.path, Path(work), calibration, eval_data, feeds, prep.budget,
                    accepts=lambda cand: _meets(prep, evaluator.score(cand.open(cfg.threads))))
        candidates = build_candidates(plan, cfg.engines, cfg.precisions, say)
        rows = judge(prep, candidates, cfg, evaluator, say)
        winner, fallback = choose(rows, candidates)
        say(f"chose {winner.name}; model.onnx: {fallback.name}")
        return write(prep, rows, winner, fallback, cfg, force)


def prepare(bundle: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: OptimizeConfig,
            calibration: api.Calibration, eval_data: str | os.PathLike[str] | None, force: bool) -> Prepared:
    """Stage 1: the fp32 bundle, texts (as the quantizer picks them), the budget and the timing feeds."""
    check_output(Path(out_dir), force)
    qcfg = QuantizationConfig.auto(quiet=True)
    source = api.load(bundle, out_dir, qcfg, force=True)
    chosen = api.texts(source, qcfg, calibration, eval_data)
    metric = get_task(source.manifest.task).metric
    if cfg.min_cosine is not None and metric != "cosine":
        raise ConfigError(f"min_cosine applies to embedding bundles; this one is {source.manifest.task}: "
                          "use max_accuracy_drop.")
    given = {"min_cosine": cfg.min_cosine, "max_accuracy_drop": cfg.max_accuracy_drop}
    budget = {k: v for k, v in given.items() if v is not None} or (
        {"min_cosine": DEFAULT_MIN_COSINE} if metric == "cosine" else {"max_accuracy_drop": DEFAULT_MAX_DROP})
    text = " ".join(str(t if isinstance(t, str) else t[0]) for t in chosen.evalset.items[:64])
    shapes = []
    for batch, length in PROFILES[cfg.profile]:
        enc = source.encoder.encode_truncated([text] * batch, min(length, source.max_length))
        feeds = source.encoder.feeds(enc)
        shapes.append((f"{batch}x{feeds['input_ids'].shape[1]}", feeds))
    return Prepared(source, chosen, budget, shapes)


def _evaluator(prep: Prepared, threads: int) -> Evaluator:
    """The fp32 reference outputs (ONNX Runtime, the bundle's own graph) on the held-out texts."""
    src = prep.source
    reference = open_engine(src.path / MODEL_FILE, threads=threads)
    return Evaluator(src.manifest, src.encoder, prep.texts.evalset, reference, src.max_length)


def _meets(prep: Prepared, report: dict[str, Any]) -> bool:
    return bool(meets(report, prep.budget.get("max_accuracy_drop"), prep.budget.get("min_cosine")))


def judge(prep: Prepared, candidates: Sequence[Candidate], cfg: OptimizeConfig, evaluator: Evaluator,
          say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Stage 3: accuracy (every built candidate against ORT fp32) and interleaved latency per shape."""
    engines = {c.name: c.open(cfg.threads) for c in candidates if c.path is not None}
    times: dict[str, dict[str, float]] = {name: {} for name in engines}
    for label, feeds in prep.shapes:
        say(f"timing {len(engines)} candidates at {label} ({cfg.threads} thread(s))")
        calls = {name: _runner(e, feeds) for name, e in engines.items()}
        for name, ms in median_ms(interleave(calls, rounds=cfg.rounds, warmup=2, primes=1)).items():
            times[name][label] = round(ms, 3)
    rows = []
    for cand in candidates:
        row: dict[str, Any] = {"name": cand.name, "engine": cand.engine, "precision": cand.precision}
        if cand.path is None:
            rows.append({**row, "skipped": cand.skipped, "meets_budget": False})
            continue
        report = evaluator.score(engines[cand.name])
        ok = _meets(prep, report)
        score = math.exp(sum(math.log(v) for v in times[cand.name].values()) / len(times[cand.name]))
        rows.append({**row, "latency_ms": times[cand.name], "score_ms": round(score, 3),
                     "accuracy": _headline(report), "meets_budget": ok, **cand.detail})
        say(f"{cand.name}: {times[cand.name]} ms, {_headline(report)}, {'meets' if ok else 'misses'} the budget")
    return rows


def choose(rows: Sequence[dict[str, Any]], candidates: Sequence[Candidate]) -> tuple[Candidate, Candidate]:
    """Stage 4: the fastest candidate within budget, and the fastest ONNX Runtime one within budget."""
    by_name = {c.name: c for c in candidates}
    passing = sorted((r for r in rows if r["meets_budget"]), key=lambda r: r["score_ms"])
    ort = [r for r in passing if r["engine"] == "onnxruntime"]
    if not ort:  # the fp32 reference always meets a budget: only missing if it was not a candidate
        ort = [r for r in rows if r["name"] == "onnxruntime-fp32"] or [{"name": "onnxruntime-fp32"}]
    fallback = by_name.get(ort[0]["name"]) or Candidate("onnxruntime-fp32", "onnxruntime", "fp32")
    return (by_name[passing[0]["name"]] if passing else fallback), fallback


def write(prep: Prepared, rows: list[dict[str, Any]], winner: Candidate, fallback: Candidate,
          cfg: OptimizeConfig, force: bool) -> Manifest:
    """Stage 5: ``model.onnx`` (the ONNX Runtime choice), the winner's files, artifacts and decision table."""
    src = prep.source
    base = fallback.manifest or src.manifest
    if fallback.path is None:
        fallback.path = src.path / MODEL_FILE
    artifacts = [_artifact(prep, winner, cfg)] if winner.engine != "onnxruntime" else []
    artifacts.append({"file": MODEL_FILE, "engine": "onnxruntime", "precision": fallback.precision,
                      "files": [MODEL_FILE]})
    autotune = {
        "chosen": winner.name, "model_onnx": fallback.name, "profile": cfg.profile, "threads": cfg.threads,
        "budget": prep.budget,
        "texts": {"evaluation": prep.texts.evalset.source, "items": len(prep.texts.evalset.items)},
        "machine": {"cpu": cpu_model(), "isa": detect_isa(), "date": time.strftime("%Y-%m-%d")},
        "candidates": rows,
    }
    manifest = dataclasses.replace(base, artifacts=tuple(artifacts), autotune=autotune, files={})

    def fill(tmp: Path) -> None:
        shutil.copyfile(str(fallback.path), tmp / MODEL_FILE)
        shutil.copyfile(resolve_member(src.path, TOKENIZER_FILE), tmp / TOKENIZER_FILE)
        if winner.engine != "onnxruntime" and winner.path is not None:
            for f in (winner.path, winner.path.with_suffix(".bin")):
                shutil.copyfile(f, tmp / f.name)

    return write_bundle(src.out, manifest, fill, force=force)


def _artifact(prep: Prepared, cand: Candidate, cfg: OptimizeConfig) -> dict[str, Any]:
    """The winner's artifact entry, with golden probes recorded on its own engine."""
    if cand.path is None:
        raise InternalError(f"candidate {cand.name} won without an artifact")
    src = prep.source
    probes = api.probes_on(src.manifest, src.encoder, cand.open(cfg.threads), atol=PROBE_ATOL[cand.precision])
    files = [cand.path.name, cand.path.with_suffix(".bin").name]
    return {"file": cand.path.name, "engine": cand.engine, "precision": cand.precision, "files": files,
            "probes": probes}


def _calibration_feeds(prep: Prepared) -> list[dict[str, np.ndarray]]:
    """Real-length calibration batches (for NNCF), from the same texts the ONNX Runtime int8 uses."""
    src = prep.source
    items = eval_items(src.manifest.task, prep.texts.calibration, src.manifest)
    return [dict(f) for _, f in data.batches(src.encoder, items, max_length=src.max_length)]


def _runner(engine: Engine, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    return lambda: engine.run(feeds)


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("metric", "texts", "cosine_mean", "cosine_min", "accuracy_drop_points", "label_agreement",
            "token_agreement", "span_agreement", "top1_agreement")
    return {k: report[k] for k in keys if k in report}
