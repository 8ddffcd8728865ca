"""The small fine-tuning loop behind the benchmark's real models (sentiment classifier, reranker, SPLADE).

Seeding, a linear-decay AdamW loop over fixed batches, and an atomic save of the model folder with its
``edgebert-train.json`` record (its presence is what marks a cached model as complete). torch is imported
only inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TRAIN_RECORD = "edgebert-train.json"


def seed_everything(seed: int, threads: int) -> Any:
    """Seed Python, numpy and torch, set torch's threads; returns ``numpy.random.default_rng(seed)``."""
    import random

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train(model: Any, examples: Sequence[Any], step: Callable[[list[Any]], Any], *, epochs: int, batch_size: int,
          learning_rate: float, quiet: bool) -> float:
    """``epochs`` passes over ``examples`` in batches (``step(batch)`` returns the loss); AdamW with a
    linear decay to 0. Returns the training seconds (rounded to 0.1); the model is left in eval mode."""
    import torch

    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    optim = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda n: max(0.0, 1.0 - n / steps))
    model.train()
    start, done = time.perf_counter(), 0
    for _ in range(epochs):
        for b in range(0, len(examples), batch_size):
            loss = step(list(examples[b : b + batch_size]))
            loss.backward()
            optim.step()
            sched.step()
            optim.zero_grad()
            done += 1
            if not quiet and done % 20 == 0:
                print(f"  step {done}/{steps} loss {loss.item():.3f}", file=sys.stderr, flush=True)
    model.eval()
    return round(time.perf_counter() - start, 1)


def save_model(out: Path, write: Callable[[Path], None], record: dict[str, Any]) -> Path:
    """``write(tmp)`` the model folder next to ``out``, add the training record, then move it into place."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    (tmp / TRAIN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def is_trained(out: Path) -> bool:
    """Whether ``out`` holds a completely saved model (see :func:`save_model`)."""
    return (out / TRAIN_RECORD).is_file()
