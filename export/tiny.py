"""Tiny random-weight models with tokenizers trained in code: for tests and benchmarks, no network.

``make_tiny_model("bert", "sequence-classification", dest)`` writes a Hugging Face folder
(config.json, model.safetensors, tokenizer files) that ``export_model`` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "edge models run fast on small devices while keeping quality high",
    "naïve café in zürich, são paulo and kraków",
    "東京 北京 ソウル 🙂 emoji text",
    "how tall is the tower? the tower is 330 metres tall",
    "a great movie with an awful ending and a wonderful cast",
    "hello world ok short long text numbers 1889 2024 42",
]


def _wordpiece(vocab_size: int = 400) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS * 5, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return tok


def make_tiny_model(model_type: str, task: str, dest: str | Path, *, num_labels: int = 3, seed: int = 0,
                    **config_overrides: Any) -> Path:
    """Write a random-weight model folder for ``model_type`` and ``task``; returns ``dest``."""
    import torch
    import transformers
    from transformers import BertTokenizerFast

    from .specs import TASK_HEADS

    dest = Path(dest)
    tok = BertTokenizerFast(tokenizer_object=_wordpiece(), unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    config_cls = transformers.AutoConfig.for_model
    defaults: dict[str, Any] = dict(vocab_size=tok.backend_tokenizer.get_vocab_size(), hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                    max_position_embeddings=64, num_labels=num_labels)
    defaults.update(config_overrides)
    config = config_cls(model_type, **defaults)
    torch.manual_seed(seed)
    auto = getattr(transformers, TASK_HEADS[task][0])
    model = auto.from_config(config)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest
