"""``python -m edgebert.benchmarks.batch_throughput BUNDLE --texts 100000``: bulk-inference throughput.

Generates N texts (deterministic), writes them to a Parquet file and runs, each in a fresh process so
that peak RSS is its own: the single-process runtime (``edgebert.load`` in chunks of ``--chunk-size``),
``edgebert batch --workers 1``, ``--workers 0`` (all CPUs), a fastembed-style pool (``parallel=N``: the
input split into chunks mapped over a multiprocessing pool whose workers each load the model with default
threads, i.e. every CPU each; fastembed itself cannot download models offline, so it is re-implemented
here), and ``--ray`` (a local Ray). It reports texts/s, the ratio to the single process, peak RSS of
the main process and of the largest worker, whether each output equals the single-process vectors
(``np.array_equal``), and optionally (``--kill-resume``) the time a SIGKILL at half-way plus ``--resume``
costs over an uninterrupted run. Numbers are returned as data (``--json``); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("single", "workers1", "workers0", "fastembed", "ray")


def generate_texts(n: int, seed: int = 0, lengths: tuple[int, ...] = (3, 8, 12, 20, 30, 50, 80)) -> list[str]:
    """``n`` texts of varied word counts (``lengths``) drawn from the packaged general-domain calibration corpus."""
    from importlib.resources import files

    words = files("edgebert.quantize").joinpath("texts/general.txt").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.choice(lengths))) for _ in range(n)]


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = generate_texts(n, seed)
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10_000)
    return path


# ----------------------------------------------------------------------------- one mode, in a fresh process
_CHILD = r"""
import json, resource, sys, time
mode, bundle, corpus, out, chunk = sys.argv[1:6]
chunk = int(chunk)
def main():
    import numpy as np
    t0 = time.perf_counter()
    if mode == "single":
        import edgebert, pyarrow.parquet as pq
        pipe = edgebert.load(bundle)
        texts = pq.read_table(corpus).column("text").to_pylist()
        vecs = np.concatenate([pipe(texts[i:i + chunk]) for i in range(0, len(texts), chunk)])
        np.save(out, vecs)
    elif mode == "fastembed":
        from edgebert.benchmarks.batch_throughput import fastembed_style
        np.save(out, fastembed_style(bundle, corpus, chunk))
    else:
        import edgebert.batch as B
        workers = {"workers1": 1, "workers0": 0, "ray": 0}[mode]
        B.run(bundle, corpus, out, workers=workers, chunk_size=chunk, quiet=True, force=True, ray=mode == "ray")
    seconds = time.perf_counter() - t0
    main_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "main_rss_mb": main_kb / 1024, "worker_rss_mb": child_kb / 1024}))
if __name__ == "__main__":
    main()
"""


def _init_fastembed(bundle: str) -> None:
    global _FE_PIPE
    import edgebert

    _FE_PIPE = edgebert.load(bundle)  # default threads: every CPU, in every worker (as fastembed does)


def _fe_embed(texts: list[str]) -> Any:
    return _FE_PIPE(texts)


_FE_PIPE: Any = None


def fastembed_style(bundle: str, corpus: str, chunk: int) -> Any:
    """fastembed's ``parallel=N``: chunks of the input mapped (in order) over a pool of N model workers."""
    import multiprocessing

    import numpy as np
    import pyarrow.parquet as pq

    from edgebert.runtime.cpus import available_cpus

    texts = pq.read_table(corpus).column("text").to_pylist()
    parts = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    with multiprocessing.get_context("spawn").Pool(available_cpus(), _init_fastembed, (bundle,)) as pool:
        return np.concatenate(list(pool.imap(_fe_embed, parts)))


def run_mode(mode: str, bundle: str, corpus: Path, work: Path, chunk: int) -> dict[str, Any]:
    """Run one mode in a fresh Python; its timing, peak RSS and output path."""
    out = work / (f"{mode}.npy" if mode in ("single", "fastembed") else f"{mode}.parquet")
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, bundle, str(corpus), str(out), str(chunk)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"mode": mode, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"mode": mode, "out": str(out), **result}


def vectors(path: str) -> Any:
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path)
    from edgebert.batch import read_results

    table = read_results(path)
    ids = table.column("id").to_numpy()
    if not (ids == np.arange(len(ids))).all():
        from edgebert.errors import BenchmarkError

        raise BenchmarkError(f"{path}: rows out of input order")
    return np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(), np.float32).reshape(len(ids), -1)


def kill_resume(bundle: str, corpus: Path, work: Path, chunk: int, total_chunks: int) -> dict[str, Any]:
    """SIGKILL ``edgebert batch`` once half the chunks are committed, then ``--resume``; seconds lost."""
    dest = work / "killed.parquet"
    cmd = [sys.executable, "-m", "edgebert.cli", "batch", bundle, str(corpus), str(dest), "--workers", "0",
           "--chunk-size", str(chunk), "--quiet", "--force"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True)
    state = dest.with_name(dest.name + ".partial") / "state.jsonl"
    while proc.poll() is None:
        if state.is_file() and len(state.read_text().splitlines()) - 1 >= total_chunks // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    subprocess.run([*cmd[:-1], "--resume"], check=True)
    return {"killed_after_s": first, "resume_s": time.perf_counter() - t1, "out": str(dest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.batch_throughput", description=__doc__)
    parser.add_argument("bundle")
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    parser.add_argument("--kill-resume", action="store_true", help="also measure a SIGKILL at half-way + --resume")
    parser.add_argument("--work", default=None, help="folder for the corpus and outputs (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    import numpy as np

    work = Path(args.work or tempfile.mkdtemp(prefix="edgebert-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(work / "corpus.parquet", args.texts)
    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        row = run_mode(mode, args.bundle, corpus, work, args.chunk_size)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    ref = next((vectors(r["out"]) for r in rows if r["mode"] == "single" and "out" in r), None)
    base = next((r["seconds"] for r in rows if r["mode"] == "single" and "seconds" in r), None)
    for r in rows:
        if "seconds" in r:
            r["texts_per_s"] = args.texts / r["seconds"]
            r["speedup_vs_single"] = base / r["seconds"] if base else None
            r["equal_to_single"] = bool(np.array_equal(vectors(r["out"]), ref)) if ref is not None else None
    result: dict[str, Any] = {"texts": args.texts, "chunk_size": args.chunk_size, "cpus": os.cpu_count(),
                              "load_avg_at_end": os.getloadavg(), "modes": rows}
    if args.kill_resume:
        total = -(-args.texts // args.chunk_size)
        kr = kill_resume(args.bundle, corpus, work, args.chunk_size, total)
        full = next((r["seconds"] for r in rows if r["mode"] == "workers0" and "seconds" in r), None)
        kr["lost_s"] = kr["killed_after_s"] + kr["resume_s"] - full if full else None
        kr["equal_to_single"] = bool(np.array_equal(vectors(kr["out"]), ref)) if ref is not None else None
        result["kill_resume"] = kr
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
