"""Cold start and peak memory of one variant, measured in a fresh process.

The parent notes the wall-clock time, starts ``python -m edgebert.benchmarks.coldstart ...`` and reaps
it with ``os.wait4`` (that child's own ``ru_maxrss``). The child imports, loads, produces its first
end-to-end result, prints the wall-clock time of that moment, then runs the 1 x 128 workload a few times
so that peak RSS covers a real forward pass, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError

RSS_SEQ = 128


def measure(bundle: Path, work: Path, variant: str, threads: int, text: str, timeout: float = 300.0) -> dict[str, Any]:
    """Seconds from process start to the first result, and the child's peak RSS in MB."""
    cmd = [sys.executable, "-m", "edgebert.benchmarks.coldstart", "--bundle", str(bundle), "--work", str(work),
           "--variant", variant, "--threads", str(threads), "--text", text]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.time()
    errfile = tempfile.TemporaryFile()  # noqa: SIM115 (closed below; the child writes to it)
    # cwd outside any source checkout: a bare ./edgebert folder there would shadow the installed package
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, env=env, cwd=tempfile.gettempdir())
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would pool all)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        proc.kill()
        raise
    finally:
        timer.cancel()
        if proc.stdout:
            proc.stdout.close()
    errfile.seek(0)
    err = errfile.read()
    errfile.close()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchmarkError(f"cold-start run of {variant} failed (exit {proc.returncode}): {' | '.join(tail)}")
    try:
        record = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError) as e:
        raise BenchmarkError(f"cold-start run of {variant} printed no result record ({e}).") from e
    return {
        "cold_start_s": round(float(record["first_result_at"]) - t0, 3),
        "import_load_s": round(float(record["loaded_at"]) - t0, 3),
        # VmHWM of the child's own address space; ru_maxrss of a forked child can report the parent's peak.
        "peak_rss_mb": round(float(record.get("vmhwm_kb") or usage.ru_maxrss) / 1024, 1),
    }


def _vmhwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bundle", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--text", required=True)
    a = p.parse_args(argv)
    from .context import BenchContext
    from .variants import select_variants

    ctx = BenchContext.open(a.bundle, a.work)
    spec = select_variants([a.variant])[0]
    runner = spec.open(ctx, spec.build(ctx), a.threads)
    loaded = time.time()
    runner.activate()
    runner.e2e([a.text])
    first = time.time()
    from edgebert.runtime.manifest import TOKENIZER_FILE
    from edgebert.runtime.tokenize import load_tokenizer

    from .workloads import Shape, shape_inputs

    seq = min(RSS_SEQ, ctx.manifest.max_length)
    inputs = shape_inputs(Shape(1, seq), load_tokenizer(ctx.bundle / TOKENIZER_FILE), ctx.manifest.inputs, [a.text])
    prepared = runner.prepare(inputs.feeds)
    for _ in range(3):
        runner.run(prepared)
    print(json.dumps({"loaded_at": loaded, "first_result_at": first, "vmhwm_kb": _vmhwm_kb()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
