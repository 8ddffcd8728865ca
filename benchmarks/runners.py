"""Runners: a variant opened at a fixed thread count, and what each library does with a graph's output.

Runners take the same numpy feeds (model-only) or texts (end-to-end) and return numpy arrays, so the
harness can time and compare them side by side. Heavy libraries (torch, openvino, tokenizers' own
copies) are imported only when a runner that needs them opens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError
from edgebert.runtime.batching import BatchLimits, plan_batches
from edgebert.runtime.engines import open_engine
from edgebert.runtime.manifest import Manifest
from edgebert.runtime.pooling import normalize, pool_batch, pooling_of
from edgebert.runtime.tasks import get_task

from .context import BenchContext
from .workloads import CORPUS_BATCH


# ---------------------------------------------------------------------------------------- post-processing
def _pooled(manifest: Manifest, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One vector per text, pooled (and normalized) as the bundle's manifest records."""
    mode, unit = pooling_of(manifest.pooling)
    vectors = pool_batch(hidden, mask, mode)
    return (normalize(vectors) if unit else vectors).astype(np.float32)


def _softmax(manifest: Manifest, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _per_text_states(manifest: Manifest, hidden: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    return [hidden[i, : int(n)] for i, n in enumerate(mask.sum(axis=1))]


def _raw(manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return output


def splade_pool(manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SPLADE vectors (texts, vocabulary): as they come from a pooled graph, or pooled here from masked-LM
    logits (an off-the-shelf fill-mask graph), as the manifest's head record says."""
    if output.ndim == 2:
        return output
    head = manifest.head or {}
    weights = np.log1p(np.maximum(output * mask[..., None].astype(output.dtype), 0))
    if head.get("activation") == "log1p_relu":
        weights = np.log1p(weights)
    return np.asarray(weights.sum(axis=1) if head.get("pooling") == "sum" else weights.max(axis=1))


def _sparse(manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per text its non-zero (indices, weights), largest first, as the sparse pipeline returns them."""
    out = []
    for row in splade_pool(manifest, output, mask):
        nz = np.flatnonzero(row > 0)
        order = nz[np.argsort(-row[nz], kind="stable")]
        out.append((order, row[order]))
    return out


def _relevance(manifest: Manifest, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cross-encoder scores: sigmoid of the one logit, or softmax's positive column (sentence-transformers)."""
    if logits.shape[-1] == 2:
        return np.asarray(_softmax(manifest, logits, mask)[:, 1])
    activation = (manifest.head or {}).get("activation", "sigmoid")
    raw = logits[:, 0]
    return np.asarray(1 / (1 + np.exp(-raw)) if activation == "sigmoid" else raw)


def task_items(task: str, manifest: Manifest, texts: Sequence[str]) -> list[Any]:
    """What the task's end-to-end path is called with: texts, or for a reranker (query, document) pairs built
    from them as the quantizer's accuracy report builds them (a text's first half vs. its neighbours' second)."""
    if get_task(task).input_kind == "query-document":
        from edgebert.quantize.retrieval import query_document

        return query_document(list(texts), manifest)
    return list(texts)


def postprocess(task: str, manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> Any:
    """Turn the graph's first output into the task result the way the reference libraries do (numpy,
    float32): pooled vectors (sentence-transformers), per-text token states, label scores, relevance scores
    (CrossEncoder), sparse vectors (SparseEncoder)."""
    spec = get_task(task)
    if spec.head_kind == "splade":
        return _sparse(manifest, output, mask)
    if spec.head_kind == "cross-encoder":
        return _relevance(manifest, output, mask)
    if spec.pooled:
        return _pooled(manifest, output, mask)
    if spec.per_token(spec.output_names[0]):
        return _per_text_states(manifest, output, mask)
    if spec.labels:
        return _softmax(manifest, output, mask)
    return _raw(manifest, output, mask)


def summarize(task: str, manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One row per item for accuracy: per-token vectors pooled as the manifest says (mean by default),
    everything else (logits of a text, per-token scores) as it is."""
    spec = get_task(task)
    if spec.head_kind == "splade":
        return np.asarray(splade_pool(manifest, output, mask), dtype=np.float64)
    if spec.per_token(spec.output_names[0]) and output.ndim == 3:
        return np.asarray(_pooled(manifest, output, mask), dtype=np.float64)
    return np.asarray(output, dtype=np.float64).reshape(output.shape[0], -1)


def in_batches(texts: Sequence[str], fn: Callable[[list[str]], Any], batch_size: int = CORPUS_BATCH) -> list[Any]:
    """Run ``fn`` over length-sorted batches (as sentence-transformers does); results in input order."""
    limits = BatchLimits(max_batch_size=batch_size, max_batch_tokens=sys.maxsize)
    results: list[Any] = [None] * len(texts)
    for idx in plan_batches([len(t) for t in texts], limits):
        for i, r in zip(idx, fn([texts[i] for i in idx]), strict=True):
            results[i] = r
    return results


# ---------------------------------------------------------------------------------------- runners
class Runner:
    """A variant opened at a fixed thread count. ``run`` is model-only, ``e2e`` is text in, result out."""

    threads: int = 1

    def activate(self) -> None:
        """Called (untimed) before each timed call: e.g. fix torch's thread count."""

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        return feeds

    def run(self, prepared: Any) -> np.ndarray:
        raise NotImplementedError

    def e2e(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError


class TorchRunner(Runner):
    """A transformers model in eager mode with its Hugging Face tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, ctx: BenchContext, threads: int) -> None:
        self.model, self.tokenizer, self.ctx, self.threads = model, tokenizer, ctx, threads
        self.names = set(ctx.manifest.inputs)

    def activate(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        import torch

        return {k: torch.from_numpy(v) for k, v in feeds.items()}

    def run(self, prepared: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(**prepared)
        first = next(iter(out.values())) if isinstance(out, dict) else out[0]  # model outputs are dicts too
        return np.asarray(first.numpy())

    def e2e(self, texts: Sequence[str]) -> Any:
        import torch

        def batch(items: list[Any]) -> Any:
            pairs = bool(items) and isinstance(items[0], tuple)
            first, second = ([a for a, _ in items], [b for _, b in items]) if pairs else (items, None)
            enc = self.tokenizer(first, second, padding=True, truncation=True,
                                 max_length=self.ctx.manifest.max_length, return_tensors="pt")
            with torch.inference_mode():
                out = self.model(**{k: v for k, v in enc.items() if k in self.names})
            first_out = next(iter(out.values())) if isinstance(out, dict) else out[0]
            return postprocess(self.ctx.task, self.ctx.manifest, first_out.numpy(), enc["attention_mask"].numpy())

        return in_batches(texts, batch)


def own_tokenizer(tokenizer_file: Path, ctx: BenchContext) -> Any:
    """A ``tokenizers`` tokenizer set up the way an off-the-shelf user would: truncation and padding on."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(ctx.manifest.max_length)
    tokenizer.enable_padding(pad_id=int(ctx.manifest.tokenizer.get("pad_id", 0) or 0))
    return tokenizer


def encode(tokenizer: Any, items: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The graph's feeds for a batch of texts (padded to the longest)."""
    encs = tokenizer.encode_batch(list(items))
    all_feeds = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                 "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
    return {k: all_feeds[k] for k in names}


class OrtRunner(Runner):
    """A plain ONNX Runtime graph with its own ``tokenizers`` tokenizer: the off-the-shelf path."""

    def __init__(self, model: Path, tokenizer_file: Path, ctx: BenchContext, threads: int) -> None:
        self.engine = open_engine(model, threads=threads)
        self.names = list(self.engine.input_names)
        self.output = self.engine.output_names[0]
        self.ctx, self.threads = ctx, threads
        self.tokenizer = own_tokenizer(tokenizer_file, ctx)  # this runner's own, as an off-the-shelf user's

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        return {k: feeds[k] if k in feeds else np.zeros_like(feeds["input_ids"]) for k in self.names}

    def run(self, prepared: Any) -> np.ndarray:
        return np.asarray(self.engine.run(prepared)[self.output])

    def e2e(self, texts: Sequence[str]) -> Any:
        def batch(items: list[str]) -> Any:
            feeds = encode(self.tokenizer, items, self.names)
            return postprocess(self.ctx.task, self.ctx.manifest, self.run(feeds), feeds["attention_mask"])

        return in_batches(texts, batch)


OPENVINO_INSTALL = 'pip install "edgebert[openvino]"'


def import_openvino() -> Any:
    """``openvino``, or a BenchmarkError that says how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise BenchmarkError(f"openvino cannot be imported ({e}): {OPENVINO_INSTALL}") from e
    return openvino


def openvino_config(threads: int, precision: str) -> dict[str, Any]:
    """The CPU plugin's compile options: a fixed thread count, one stream, latency, an explicit precision
    (OpenVINO picks bf16 by itself on some CPUs unless told)."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision}


class OpenVinoRunner(OrtRunner):
    """An ONNX graph or OpenVINO IR compiled by OpenVINO for the CPU at a fixed thread count and inference
    precision ("f32" or "bf16"), with the same own tokenizer and post-processing as :class:`OrtRunner`."""

    def __init__(self, model: Path, tokenizer_file: Path, ctx: BenchContext, threads: int,
                 precision: str = "f32") -> None:
        ov = import_openvino()
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(model)), "CPU", openvino_config(threads, precision))
        self.request = self.compiled.create_infer_request()
        self.names = [i.get_any_name() for i in self.compiled.inputs]
        self.ctx, self.threads = ctx, threads
        self.tokenizer = own_tokenizer(tokenizer_file, ctx)

    def run(self, prepared: Any) -> np.ndarray:
        # inputs shared (as ONNX Runtime reads numpy memory in place); outputs copied out of the request
        return np.asarray(self.request.infer(prepared, share_inputs=True)[0])


class EdgebertRunner(Runner):
    """``edgebert.load(bundle, threads=...)``: model-only runs its engine, end-to-end calls the pipeline."""

    def __init__(self, bundle: Path, threads: int) -> None:
        import edgebert

        self.threads = threads
        self.pipeline: Any = edgebert.load(bundle, threads=threads)
        self.engine = self.pipeline.engine
        self.output = self.engine.output_names[0]

    def run(self, prepared: Any) -> np.ndarray:
        return np.asarray(self.engine.run(prepared)[self.output])

    def e2e(self, texts: Sequence[str]) -> Any:
        return self.pipeline(list(texts))


__all__ = ["OPENVINO_INSTALL", "EdgebertRunner", "OpenVinoRunner", "OrtRunner", "Runner", "TorchRunner", "encode",
           "import_openvino", "in_batches", "openvino_config", "own_tokenizer", "postprocess", "splade_pool",
           "summarize", "task_items"]
