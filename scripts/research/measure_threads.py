"""Measure ONNX Runtime intra-op thread settings on an idle and on a busy machine.

    python scripts/research/measure_threads.py BUNDLE [--rounds 30]

Sessions: 1 thread; all CPUs without spinning (edgebert's default since stop 9); the same with short
calls routed to one thread (edgebert's default since stop 22, ``runtime/engines/short_calls.py``).
``--spinning``: only all CPUs with spinning (ONNX Runtime's default), run in a process of its own since
its spinning pool threads would slow the sessions timed between its calls. Each shape is timed
interleaved in one process, once with the machine as it is and once with a busy-loop process per CPU
minus one competing (a "busy" machine).
Prints a markdown table of p50 ms. A research script, not part of the package.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.cpus import available_cpus
from edgebert.runtime.engines.ort import OrtEngine
from edgebert.runtime.timing import interleave, median_ms
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

SHAPES = ((1, 16), (1, 32), (1, 64), (1, 128), (8, 128), (32, 128))


def _session(path: str, threads: int, config: dict[str, str], short: bool = False) -> OrtEngine:
    return OrtEngine(path, threads=threads, session_config=config, short_calls=short)


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--spinning", action="store_true", help="only a spinning session (run it in its own process)")
    args = ap.parse_args()
    n = available_cpus()
    manifest = read_manifest(args.bundle)
    enc = TextEncoder(load_tokenizer(os.path.join(args.bundle, "tokenizer.json")), manifest)
    model = os.path.join(args.bundle, "model.onnx")
    if args.spinning:  # spinning pools steal the CPU from the sessions interleaved with them: measure alone
        sessions = {f"{n} threads, spinning": _session(model, n, {"session.intra_op.allow_spinning": "1"})}
    else:
        sessions = {
            "1 thread": _session(model, 1, {}),
            f"{n} threads, no spinning": _session(model, n, {"session.intra_op.allow_spinning": "0"}),
            f"{n} threads, no spinning, short calls on 1 (default)": _session(model, n, {}, short=True),
        }
    text = " ".join(["edge models run fast on small devices while keeping quality high"] * 40)
    print(f"| machine | shape | {' | '.join(sessions)} |")
    print(f"|---|---|{'---|' * len(sessions)}")
    for busy in (False, True):
        stop = mp.Event()
        burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(max(1, n - 1) if busy else 0)]
        for p in burners:
            p.start()
        time.sleep(0.5)
        for batch, length in SHAPES:
            feeds = enc.feeds(enc.encode_truncated([text] * batch, length))
            calls = {k: (lambda s=s, f=feeds: s.run(f)) for k, s in sessions.items()}
            rounds = args.rounds if batch == 1 else max(5, args.rounds // 4)
            ms = median_ms(interleave(calls, rounds=rounds, warmup=2, primes=1))
            cells = " | ".join(f"{ms[k]:.2f}" for k in sessions)
            print(f"| {'busy' if busy else 'as is'} | {batch}x{length} | {cells} |", flush=True)
        stop.set()
        for p in burners:
            p.join()


if __name__ == "__main__":
    main()
