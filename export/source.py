"""Reading a local Hugging Face model folder: config, tokenizer, sentence-transformers settings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebert.errors import ModelSourceError, UnsupportedModelError
from edgebert.runtime.tasks import task_for_architecture

from .heads import st_model_type
from .specs import arch_spec

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# pre-training heads that are not a masked-LM head (ELECTRA's discriminator tells replaced tokens apart)
ENCODER_ONLY_PRETRAINING = {"ElectraForPreTraining": "a replaced-token discriminator without a masked-LM head"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
)


@dataclass(frozen=True)
class SourceModel:
    """What edgebert read from the folder before loading any weights."""

    path: Path
    config: dict[str, Any]
    model_type: str
    architectures: tuple[str, ...]
    sentence_transformers: bool
    pooling: dict[str, Any] | None
    st_max_length: int | None
    # sentence-transformers' model type: "SentenceTransformer", "CrossEncoder", "SparseEncoder" (or None)
    st_model_type: str | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSourceError(
            f"{path}: cannot read it as JSON ({e}). Restore the file from the original model."
        ) from e


def inspect_source(path: str | os.PathLike[str]) -> SourceModel:
    """Validate the folder (config, weights, tokenizer) and read sentence-transformers settings."""
    root = Path(path)
    if not root.exists():
        raise ModelSourceError(f"{root}: no such model folder. Give the path of a local Hugging Face model directory.")
    if not root.is_dir():
        raise ModelSourceError(f"{root}: not a directory. Give the folder that holds config.json and the weights.")
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ModelSourceError(
            f"{root}: config.json is missing; this is not a Hugging Face model folder. Save the model "
            "with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
        )
    config = _read_json(config_path)
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelSourceError(f"{config_path}: no 'model_type' key; re-save the model with save_pretrained().")
    model_type = str(config["model_type"])
    arch_spec(model_type)  # raises UnsupportedModelError listing the supported types
    if not any((root / f).is_file() for f in WEIGHT_FILES):
        raise ModelSourceError(
            f"{root}: no weights found (looked for {', '.join(WEIGHT_FILES)}). Save them with model.save_pretrained()."
        )
    if not any((root / f).is_file() for f in TOKENIZER_FILES):
        raise ModelSourceError(
            f"{root}: no tokenizer files found (looked for {', '.join(TOKENIZER_FILES)}). "
            "Save it next to the model with tokenizer.save_pretrained(folder)."
        )
    pooling, st_max, is_st = _sentence_transformers(root)
    archs = tuple(str(a) for a in config.get("architectures") or ())
    return SourceModel(root, config, model_type, archs, is_st, pooling, st_max, st_model_type(root))


def _sentence_transformers(root: Path) -> tuple[dict[str, Any] | None, int | None, bool]:
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None, None, False
    modules = _read_json(modules_path)
    if not isinstance(modules, list):
        raise ModelSourceError(f"{modules_path}: expected a JSON list of modules.")
    pooling: dict[str, Any] = {"mode": "mean", "normalize": False, "source": "sentence-transformers"}
    for module in modules:
        kind = str(module.get("type", ""))
        name = kind.rsplit(".", 1)[-1]  # sentence-transformers 5 moved the classes (base.modules.transformer...)
        if name in ("Transformer", "MLMTransformer", "SpladePooling"):
            continue  # the encoder; SPLADE's pooling is read by export.heads
        if name == "Pooling":
            cfg = _read_json(root / str(module.get("path", "")) / "config.json")
            if cfg.get("pooling_mode_cls_token"):
                pooling["mode"] = "cls"
            elif cfg.get("pooling_mode_max_tokens"):
                pooling["mode"] = "max"
            elif cfg.get("pooling_mode_mean_tokens"):
                pooling["mode"] = "mean"
            else:
                modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
                raise UnsupportedModelError(
                    f"{root}: sentence-transformers pooling {modes} is not supported; edgebert pools with "
                    "cls, mean or max."
                )
        elif name == "Normalize":
            pooling["normalize"] = True
        else:
            raise UnsupportedModelError(
                f"{root}: sentence-transformers module {kind!r} is not supported (edgebert handles "
                "Transformer, Pooling, Normalize, MLMTransformer and SpladePooling). Export the bare transformer "
                "with task='feature-extraction'."
            )
    st_max = None
    st_cfg = root / "sentence_bert_config.json"
    if st_cfg.is_file():
        value = _read_json(st_cfg).get("max_seq_length")
        st_max = int(value) if value else None
    return pooling, st_max, True


def pick_task(source: SourceModel) -> tuple[str, str]:
    """Task for ``task='auto'`` and the reason, from the folder and ``config.architectures``."""
    if source.st_model_type == "CrossEncoder":
        return "rerank", "sentence-transformers CrossEncoder folder"
    if source.st_model_type == "SparseEncoder":
        return "sparse-embedding", "sentence-transformers SparseEncoder folder"
    if source.sentence_transformers:
        return "embedding", "sentence-transformers folder (modules.json)"
    for arch in source.architectures:
        if arch in ENCODER_ONLY_PRETRAINING:
            return "feature-extraction", f"config.architectures = {arch}, {ENCODER_ONLY_PRETRAINING[arch]}"
        task = task_for_architecture(arch)
        if task is not None:
            return task.name, f"config.architectures = {arch}"
    if source.architectures:
        heads = ", ".join(source.architectures)
        return "feature-extraction", f"config.architectures = {heads} has no edgebert task; exporting the encoder"
    return "feature-extraction", "config.json names no architecture; exporting the encoder"
