"""Real retrieval models built here from the packaged all-MiniLM-L6-v2 and real text (no hub downloads).

No real reranker or SPLADE weights install offline, so both are trained on an honest task over the Rotten
Tomatoes snippets of :mod:`edgebert.benchmarks.data` (train split only): *continuation retrieval*. A
snippet's first half is the query, its second half the relevant document, other snippets' second halves
the irrelevant ones.

- ``reranker``: a MiniLM cross-encoder (one logit, BCE over 1 positive + 3 negatives per query), saved as a
  sentence-transformers ``CrossEncoder`` folder (sigmoid activation).
- ``splade``: MiniLM with a masked-LM head (decoder tied to the word embeddings) trained as SPLADE (max of
  log(1 + relu(logits)); in-batch-negative contrastive loss plus FLOPS regularization), saved as a
  sentence-transformers ``SparseEncoder`` folder.

    python -m edgebert.benchmarks.retrieval_models prepare   # trains once, cached; prints the folders

Evaluate with ``edgebert export`` + ``edgebert quantize --eval ~/.cache/edgebert/data/eval.txt`` (the eval
split: groups of 10 continuations per query, see :mod:`edgebert.quantize.retrieval`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .data import cache_dir, minilm_path, splits
from .training import is_trained, save_model, seed_everything, train


@dataclass(frozen=True)
class RetrievalTrainConfig:
    """Recipe of both models (recorded next to them)."""

    queries: int = 2_000
    negatives: int = 3
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    max_length: int = 64
    flops_weight: float = 3e-3
    seed: int = 0
    threads: int = 2

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def continuation_pairs(cache: Path | None = None, limit: int = 2_000) -> list[tuple[str, str]]:
    """(first half, second half) of the train split's snippets with at least 8 words."""
    out = []
    for s in splits(cache)["train"]:
        words = s.text.split()
        if len(words) >= 8:
            cut = len(words) // 2
            out.append((" ".join(words[:cut]), " ".join(words[cut:])))
    return out[:limit]


def _start(name: str, cache: Path | None, cfg: RetrievalTrainConfig | None) -> tuple[RetrievalTrainConfig, Path]:
    """The recipe (default if None) and the cache folder of the model ``name`` trained with it."""
    cfg = cfg or RetrievalTrainConfig()
    return cfg, (cache or cache_dir()) / "models" / f"minilm-{name}-{cfg.key()}"


def _inputs(cache: Path | None, cfg: RetrievalTrainConfig) -> tuple[list[tuple[str, str]], Any, Any]:
    """The training pairs, the seeded generator and MiniLM's tokenizer, after seeding everything."""
    from transformers import AutoTokenizer

    pairs = continuation_pairs(cache, cfg.queries)
    rng = seed_everything(cfg.seed, cfg.threads)
    return pairs, rng, AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def reranker(cache: Path | None = None, cfg: RetrievalTrainConfig | None = None, *, quiet: bool = True) -> Path:
    """The MiniLM cross-encoder (a sentence-transformers CrossEncoder folder), trained once and cached."""
    cfg, out = _start("reranker", cache, cfg)
    if is_trained(out):
        return out
    import torch
    from transformers import BertForSequenceClassification

    pairs, rng, tok = _inputs(cache, cfg)
    model = BertForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=1, local_files_only=True,
                                                          attn_implementation="eager")
    examples = []
    for i, (query, doc) in enumerate(pairs):
        examples.append((query, doc, 1.0))
        for j in rng.choice(len(pairs) - 1, size=cfg.negatives, replace=False):
            examples.append((query, pairs[int(j) + (int(j) >= i)][1], 0.0))
    order = rng.permutation(len(examples))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(batch: list[tuple[str, str, float]]) -> Any:
        enc = tok([q for q, _, _ in batch], [d for _, d, _ in batch], padding=True, truncation=True,
                  max_length=cfg.max_length, return_tensors="pt")
        return loss_fn(model(**enc).logits.squeeze(-1), torch.tensor([y for _, _, y in batch]))

    seconds = train(model, [examples[i] for i in order], step, epochs=cfg.epochs, batch_size=cfg.batch_size,
                    learning_rate=cfg.learning_rate, quiet=quiet)

    def write(tmp: Path) -> None:
        from sentence_transformers import CrossEncoder

        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        CrossEncoder(str(tmp), activation_fn=torch.nn.Sigmoid()).save(str(tmp))

    record = {"config": asdict(cfg), "queries": len(pairs), "examples": len(examples), "train_seconds": seconds,
              "task": "continuation retrieval on the train split of the Rotten Tomatoes snippets"}
    return save_model(out, write, record)


def splade(cache: Path | None = None, cfg: RetrievalTrainConfig | None = None, *, quiet: bool = True) -> Path:
    """The MiniLM SPLADE model (a sentence-transformers SparseEncoder folder), trained once and cached."""
    cfg, out = _start("splade", cache, cfg)
    if is_trained(out):
        return out
    import torch
    from transformers import BertForMaskedLM

    pairs, rng, tok = _inputs(cache, cfg)
    model = BertForMaskedLM.from_pretrained(str(minilm_path()), local_files_only=True, attn_implementation="eager")

    def encode(texts: list[str]) -> Any:
        enc = tok(texts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        logits = model(**enc).logits * enc["attention_mask"].unsqueeze(-1)
        return torch.log1p(torch.relu(logits)).amax(dim=1)

    def step(batch: list[tuple[str, str]]) -> Any:
        q, d = encode([x for x, _ in batch]), encode([y for _, y in batch])
        scores = q @ d.T
        flops = (q.abs().mean(0) ** 2).sum() + (d.abs().mean(0) ** 2).sum()
        return torch.nn.functional.cross_entropy(scores, torch.arange(len(batch))) + cfg.flops_weight * flops

    seconds = train(model, [pairs[i] for i in rng.permutation(len(pairs))], step, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, quiet=quiet)

    def write(tmp: Path) -> None:
        from sentence_transformers import SparseEncoder
        from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

        mlm = tmp / "mlm"
        model.save_pretrained(mlm)
        tok.save_pretrained(mlm)
        SparseEncoder(modules=[MLMTransformer(str(mlm)), SpladePooling(pooling_strategy="max")]).save(str(tmp))
        shutil.rmtree(mlm)

    record = {"config": asdict(cfg), "queries": len(pairs), "train_seconds": seconds,
              "task": "continuation retrieval on the train split of the Rotten Tomatoes snippets"}
    return save_model(out, write, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.retrieval_models",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["prepare"], help="train (once) and print the model folders")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    from edgebert.export.convert import quiet_transformers

    with quiet_transformers():
        paths = {"reranker": reranker(quiet=args.quiet), "splade": splade(quiet=args.quiet)}
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
