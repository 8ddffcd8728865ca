"""Retrieval heads: what a cross-encoder's score and a SPLADE vector are, read from the model folder, and
the SPLADE pooling traced into the graph.

A sentence-transformers ``CrossEncoder`` folder records its activation in ``config_sentence_transformers.json``
(v5) or in config.json (``sentence_transformers.activation_fn``, or ``sbert_ce_default_activation_function``
before v4); a ``SparseEncoder`` folder has an ``MLMTransformer`` and a ``SpladePooling`` module whose
config gives the pooling ("max" or "sum") and the activation ("relu" or "log1p_relu").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgebert.errors import ModelSourceError, UnsupportedModelError

# sentence-transformers' activation_fn (a torch class path) -> the runtime's activation name
CE_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "none", "Tanh": "tanh", "Softmax": "softmax"}
SPLADE_POOLING = ("max", "sum")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSourceError(
            f"{path}: cannot read it as JSON ({e}). Restore the file from the original model."
        ) from e
    if not isinstance(data, dict):
        raise ModelSourceError(f"{path}: expected a JSON object.")
    return data


def st_model_type(root: Path) -> str | None:
    """``"SentenceTransformer"``, ``"CrossEncoder"`` or ``"SparseEncoder"`` for a sentence-transformers folder;
    ``"CrossEncoder"`` for a pre-v5 cross-encoder (config.json only); None otherwise."""
    st_config = root / "config_sentence_transformers.json"
    if st_config.is_file():
        kind = _json(st_config).get("model_type")
        if isinstance(kind, str):
            return kind
    config = _json(root / "config.json")
    legacy = config.get("sentence_transformers") or {}
    if "sbert_ce_default_activation_function" in config or "activation_fn" in legacy:
        return "CrossEncoder"
    return "SentenceTransformer" if (root / "modules.json").is_file() else None


def cross_encoder_head(root: Path, num_labels: int) -> dict[str, Any]:
    """The activation a cross-encoder was trained with (sentence-transformers' default: sigmoid for one logit)."""
    path: Any = None
    st_config = root / "config_sentence_transformers.json"
    if st_config.is_file():
        path = _json(st_config).get("activation_fn")
    config = _json(root / "config.json")
    path = path or (config.get("sentence_transformers") or {}).get("activation_fn")
    path = path or config.get("sbert_ce_default_activation_function")
    if not path:
        return {"activation": "sigmoid" if num_labels == 1 else "softmax", "source": "default"}
    name = CE_ACTIVATIONS.get(str(path).rsplit(".", 1)[-1])
    if name is None:
        raise UnsupportedModelError(
            f"{root}: the cross-encoder's activation {path!r} is not supported; edgebert applies "
            f"{', '.join(sorted(CE_ACTIVATIONS))} (torch.nn). Score with activation='none' and apply it yourself."
        )
    if name == "softmax":
        name = "softmax" if num_labels == 2 else "none"
    return {"activation": name, "source": "sentence-transformers", "activation_fn": str(path)}


def splade_head(root: Path, modules: list[dict[str, Any]]) -> dict[str, Any]:
    """SPLADE pooling from the folder's ``SpladePooling`` module (defaults: max of log(1 + relu))."""
    record: dict[str, Any] = {"pooling": "max", "activation": "relu", "source": "default"}
    for module in modules:
        if str(module.get("type", "")).rsplit(".", 1)[-1] == "SpladePooling":
            cfg = _json(root / str(module.get("path", "")) / "config.json")
            record = {"pooling": cfg.get("pooling_strategy", "max"),
                      "activation": cfg.get("activation_function", "relu"), "source": "sentence-transformers"}
    if record["pooling"] not in SPLADE_POOLING or record["activation"] not in SPLADE_ACTIVATIONS:
        raise UnsupportedModelError(
            f"{root}: SPLADE pooling {record['pooling']!r} with activation {record['activation']!r} is not supported; "
            f"edgebert pools with {' or '.join(SPLADE_POOLING)} and {' or '.join(SPLADE_ACTIVATIONS)}."
        )
    return record


def splade_model(model: Any, head: dict[str, Any]) -> Any:
    """A module with the masked-LM's inputs whose output ``sparse_embedding`` is the pooled SPLADE vector:
    ``pool over tokens of log(1 + relu(logits))`` (twice log1p for "log1p_relu"), padding masked."""
    import inspect

    import torch

    pooling, activation = head["pooling"], head["activation"]

    class Splade(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlm = model
            self.config = model.config

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None,
                    return_dict: bool = True) -> dict[str, Any]:
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask, **extra, return_dict=True).logits
            weights = torch.log1p(torch.relu(logits * attention_mask.unsqueeze(-1).to(logits.dtype)))
            if activation == "log1p_relu":
                weights = torch.log1p(weights)
            pooled = weights.amax(dim=1) if pooling == "max" else weights.sum(dim=1)
            return {"sparse_embedding": pooled}

    wrapper = Splade().eval()
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        # used_inputs() reads the signature: a model without token types must not be fed them
        def forward(input_ids: Any, attention_mask: Any, return_dict: bool = True) -> dict[str, Any]:
            return Splade.forward(wrapper, input_ids, attention_mask, None, return_dict)

        wrapper.forward = forward  # type: ignore[method-assign,assignment]
    return wrapper
