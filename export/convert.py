"""PyTorch -> ONNX conversion and ONNX Runtime graph fusion."""

from __future__ import annotations

import contextlib
import inspect
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ExportError, ModelSourceError, StorageError, UnsupportedModelError
from edgebert.runtime.tasks import Task, get_task

from .specs import ArchSpec

OPSET = 17
# Graphs whose files reach this size are written as model.onnx + model.onnx.data (protobuf caps one file at
# 2 GiB); smaller ones as a single file.
EXTERNAL_DATA_BYTES = 1_800_000_000
FUSED_OP_TYPES = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


def load_torch_model(path: Path, task: str, attn_implementation: str = "eager") -> Any:
    """Load the model with the task's head; the attention implementation decides which pattern gets
    traced (eager: the one ORT's attention fusion recognises for most BERT-family models)."""
    import transformers

    auto = getattr(transformers, get_task(task).head)
    try:
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            model, info = auto.from_pretrained(
                str(path), local_files_only=True, output_loading_info=True, attn_implementation=attn_implementation
            )
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelSourceError(
            f"{path}: cannot load the weights for task {task!r} ({type(e).__name__}: {str(e).strip()[:300]}). "
            "The weights are corrupt or do not match config.json; re-save the model with save_pretrained()."
        ) from e
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ModelSourceError(
            f"{path}: the weights could not be read ({type(e).__name__}: {str(e).strip()[:300]}). "
            "Re-download or re-save the model."
        ) from e
    missing = [k for k in info.get("missing_keys") or () if not _harmless_missing(k, task)]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise UnsupportedModelError(
            f"{path}: the checkpoint has no trained weights for the {task!r} head ({type(model).__name__} "
            f"would start from random values for: {shown}). Export it with a task it was trained for "
            "(feature-extraction or embedding work for any checkpoint; --task auto picks from config.json), "
            "or fine-tune it for this task and save it with save_pretrained() first."
        )
    return model.eval()


def _harmless_missing(key: str, task: str) -> bool:
    """Missing weights that cannot change the exported outputs."""
    if key.endswith("position_ids"):  # a buffer, not a weight
        return True
    # the pooler is not part of a bare encoder's outputs (last_hidden_state)
    return get_task(task).head == "AutoModel" and "pooler" in key


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logger (its 'newly initialized' notice is turned into an error here) and its
    progress bars (transformers 5 draws one while loading weights)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def used_inputs(model: Any) -> tuple[str, ...]:
    """The inputs the model really uses: token_type_ids only with more than one type embedding."""
    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    type_vocab = int(getattr(model.config, "type_vocab_size", 0) or 0)
    if "token_type_ids" in params and type_vocab > 1:
        names.append("token_type_ids")
    return tuple(names)


def make_wrapper(model: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> tuple[Any, ...]:
            result = self.model(**dict(zip(inputs, args, strict=True)), return_dict=True)
            return tuple(result[name] for name in outputs)

    return Wrapper().eval()


def torch_outputs(model: Any, feeds: dict[str, np.ndarray], outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        result = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}, return_dict=True)
    return {name: result[name].float().numpy() for name in outputs}


def export_onnx(model: Any, feeds: dict[str, np.ndarray], inputs: tuple[str, ...], task: Task, path: Path) -> float:
    """TorchScript-based export of the task's outputs with dynamic batch and sequence axes (outputs with one
    row per text: batch axis only); returns seconds taken."""
    import torch

    outputs = task.output_names
    wrapper = make_wrapper(model, inputs, outputs)
    args = tuple(torch.from_numpy(feeds[name]) for name in inputs)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in inputs}
    for name in outputs:
        axes[name] = {0: "batch", 1: "sequence"} if task.per_token(name) else {0: "batch"}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except OSError as e:
        raise StorageError(
            f"cannot write the ONNX graph to {path.parent} ({e}). Free disk space in the temporary "
            "directory (set TMPDIR to another disk) and retry."
        ) from e
    except Exception as e:
        raise ExportError(
            f"torch.onnx.export failed ({type(e).__name__}: {str(e).strip()[:500]}). This architecture or "
            "checkpoint uses an operation the TorchScript exporter cannot convert; please report it."
        ) from e
    finally:
        model.eval()  # the TorchScript exporter leaves the module in training mode
    return time.perf_counter() - start


def graph_bytes(path: Path) -> int:
    """Size of a graph with its external data (everything in its own directory)."""
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())


def write_graph(src: Path, dst: Path) -> None:
    """Copy a graph into the bundle: one file, or ``model.onnx`` + ``model.onnx.data`` when its weights are
    too large for one protobuf (2 GiB) -- or above ``EXTERNAL_DATA_BYTES``."""
    if graph_bytes(src) < EXTERNAL_DATA_BYTES and not _has_external_data(src):
        shutil.copyfile(src, dst)
        return
    import onnx

    model = onnx.load(str(src))  # pulls in the external tensors, wherever the exporter put them
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=dst.name + ".data",
        size_threshold=1024,
    )


def _has_external_data(path: Path) -> bool:
    return any(p.is_file() and p != path for p in path.parent.iterdir())


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def fuse(src: Path, dst: Path, spec: ArchSpec, config: dict[str, Any]) -> dict[str, Any]:
    """Apply onnxruntime.transformers fusions (attention, skip-layernorm, gelu); returns a report."""
    if spec.ort_model_type is None:
        return {"applied": False, "reason": f"ONNX Runtime has no fusion patterns for {spec.name}"}
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    heads = int(config.get("num_attention_heads") or config.get("n_heads") or 0)  # DistilBERT: n_heads, dim
    hidden = int(config.get("hidden_size") or config.get("dim") or 0)
    if config.get("model_type") == "mobilebert":
        hidden = int(config.get("true_hidden_size") or hidden)
    options = FusionOptions(spec.ort_model_type)
    try:
        import logging

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(
                str(src),
                model_type=spec.ort_model_type,
                num_heads=heads,
                hidden_size=hidden,
                optimization_options=options,
                opt_level=0,
                use_gpu=False,
            )
            external = graph_bytes(src) >= EXTERNAL_DATA_BYTES or _has_external_data(src)
            model.save_model_to_file(str(dst), use_external_data_format=external, all_tensors_to_one_file=True)
    except OSError as e:
        raise StorageError(f"cannot write the fused graph to {dst.parent} ({e}). Free disk space and retry.") from e
    except Exception as e:
        return {"applied": False, "reason": f"optimizer failed: {type(e).__name__}: {str(e)[:200]}"}
    return {"applied": True, "ort_model_type": spec.ort_model_type}
