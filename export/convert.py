"""PyTorch -> ONNX conversion and ONNX Runtime graph fusion."""

from __future__ import annotations

import inspect
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ExportError, ModelSourceError

from .specs import TASK_HEADS, ArchSpec

OPSET = 17
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


def load_torch_model(path: Path, task: str, num_labels: int | None = None) -> Any:
    """Load the model for a task with eager attention (the pattern ORT's fusions recognise)."""
    import transformers

    auto_name, _ = TASK_HEADS[task]
    auto = getattr(transformers, auto_name)
    kwargs: dict[str, Any] = {"attn_implementation": "eager"}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, EnvironmentError) as e:
        raise ModelSourceError(
            f"{path}: cannot load the weights for task {task!r} ({type(e).__name__}: {str(e).strip()[:300]}). "
            "The weights are corrupt or do not match config.json; re-save the model with save_pretrained()."
        ) from e
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ModelSourceError(
            f"{path}: the weights could not be read ({type(e).__name__}: {str(e).strip()[:300]}). "
            "Re-download or re-save the model."
        ) from e
    return model.eval()


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


def export_onnx(
    model: Any, feeds: dict[str, np.ndarray], inputs: tuple[str, ...], outputs: tuple[str, ...], path: Path
) -> float:
    """TorchScript-based export with dynamic batch and sequence axes; returns seconds taken."""
    import torch

    wrapper = make_wrapper(model, inputs, outputs)
    args = tuple(torch.from_numpy(feeds[name]) for name in inputs)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in inputs}
    for name in outputs:
        axes[name] = {0: "batch"} if _pooled(model) else {0: "batch", 1: "sequence"}
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
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed ({type(e).__name__}: {str(e).strip()[:500]}).") from e
    finally:
        model.eval()  # the TorchScript exporter leaves the module in training mode
    return time.perf_counter() - start


def _pooled(model: Any) -> bool:
    """Sequence classification heads output one row per text, not per token."""
    return type(model).__name__.endswith("ForSequenceClassification")


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

    heads = int(config.get("num_attention_heads") or 0)
    hidden = int(config.get("hidden_size") or 0)
    if config.get("model_type") == "mobilebert":
        hidden = int(config.get("true_hidden_size") or hidden)
    options = FusionOptions(spec.ort_model_type)
    try:
        import logging

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(
                str(src), model_type=spec.ort_model_type, num_heads=heads, hidden_size=hidden,
                optimization_options=options, opt_level=0, use_gpu=False,
            )
            model.save_model_to_file(str(dst))
    except Exception as e:
        return {"applied": False, "reason": f"optimizer failed: {type(e).__name__}: {str(e)[:200]}"}
    return {"applied": True, "ort_model_type": spec.ort_model_type}
