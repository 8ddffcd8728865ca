"""The tiny-model recipes of tests/tiny.py: each architecture's tokenizer family, special tokens, templates and
tiny config values, written down by hand from the real checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["wordpiece", "bpe", "unigram"]
# byte-level BPE pre-tokenization: GPT-2's regex (RoBERTa), GPT-NeoX's (NFC first: OLMo, ModernBERT), or
# Llama 3's regex split ahead of a regex-free byte-level step (EuroBERT)
ByteLevelStyle = Literal["gpt2", "neox", "llama3"]
# the SentencePiece normalizer and pre-tokenizer that transformers 5 builds for the class (its own pipeline
# replaces tokenizer.json's there), used under 4.x too so that both lines tokenize alike; the precompiled
# charsmap of the real checkpoints is left out (only a trained sentencepiece model has one)
SentencePieceStyle = Literal["xlm-roberta", "albert", "deberta-v2"]
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinyRecipe:
    """How to build the tokenizer and a tiny config for one ``model_type``.

    Attributes:
        tokenizer_class: the transformers ``*TokenizerFast`` class that wraps the trained tokenizer (under
            transformers 5 most of these names are aliases of one tokenizers-backed class).
        family: tokenizer model family (WordPiece, byte-level BPE or Unigram/Metaspace).
        specials: special tokens in id order: the first ids of the vocabulary, or the last ones with
            ``specials_last`` (ModernBERT's sit at 50280+, EuroBERT's at 128000+, after the BPE merges).
        roles: tokenizer keyword -> special token (pad_token, cls_token, ...).
        single, pair: post-processor templates (``$A``/``$B`` with optional ``:type`` suffix).
        lowercase: lowercase in the normalizer (BERT uncased, ALBERT).
        config: tiny config values for this architecture, applied before user overrides.
        roberta_post: RoBERTa's own post-processor (offset trimming) instead of a template.
        byte_level: the byte-level BPE pre-tokenization style.
        sentencepiece: the Unigram normalizer/pre-tokenizer style (XLM-RoBERTa's, ALBERT's or DeBERTa-v2's).
        specials_last: specials are added after training, behind the learned vocabulary.
        lstrip: specials (added behind the vocabulary) that swallow the space before them (ModernBERT's [MASK]).
        tokenizer_kwargs: extra keywords for the tokenizer class (model_input_names, ...).
        config_ids: config field -> tokenizer attribute whose id it takes (pad_token_id is always set).
    """

    tokenizer_class: str
    family: Family
    specials: tuple[str, ...]
    roles: dict[str, str]
    single: str
    pair: str
    lowercase: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    roberta_post: bool = False
    byte_level: ByteLevelStyle = "gpt2"
    sentencepiece: SentencePieceStyle = "xlm-roberta"
    specials_last: bool = False
    lstrip: tuple[str, ...] = ()
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    config_ids: dict[str, str] = field(default_factory=dict)


_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BERT_ROLES = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
_CLS_SEP_AS_BOS_EOS = {"bos_token": "[CLS]", "eos_token": "[SEP]"}  # ALBERT and DeBERTa-v2 tokenizers
_BERT_SINGLE, _BERT_PAIR = "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"
_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # pad id 1 = config.pad_token_id
_ROBERTA_ROLES = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
_ROBERTA_SINGLE, _ROBERTA_PAIR = "<s> $A </s>", "<s> $A </s> </s> $B </s>"
_NO_TOKEN_TYPES = {"model_input_names": ["input_ids", "attention_mask"]}
_BOS_EOS_IDS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id"}


def _wordpiece_recipe(cls: str, **config: Any) -> TinyRecipe:
    return TinyRecipe(cls, "wordpiece", _BERT_SPECIALS, _BERT_ROLES, _BERT_SINGLE, _BERT_PAIR, config=config)


def _sentencepiece_recipe(cls: str, family: Family = "unigram", **kwargs: Any) -> TinyRecipe:
    """RoBERTa's layout (<s> <pad> </s> <unk> <mask>, one token type): SentencePiece (XLM-RoBERTa) by default."""
    return TinyRecipe(
        cls,
        family,
        _ROBERTA_SPECIALS,
        _ROBERTA_ROLES,
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
        lowercase=False,
        config={"type_vocab_size": 1},
        **kwargs,
    )


RECIPES: dict[str, TinyRecipe] = {
    "bert": _wordpiece_recipe("BertTokenizerFast"),
    "distilbert": _wordpiece_recipe("DistilBertTokenizerFast"),
    "electra": _wordpiece_recipe("ElectraTokenizerFast", embedding_size=16),
    # the real MobileBERT layout (bottleneck, no_norm, relu, stacked FFNs), scaled down
    "mobilebert": _wordpiece_recipe(
        "MobileBertTokenizerFast",
        embedding_size=16,
        intra_bottleneck_size=16,
        num_feedforward_networks=2,
    ),
    "mpnet": TinyRecipe(
        "MPNetTokenizerFast",
        "wordpiece",
        ("<s>", "<pad>", "</s>", "[UNK]", "<mask>"),
        {**_ROBERTA_ROLES, "unk_token": "[UNK]"},
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
    ),
    "roberta": _sentencepiece_recipe("RobertaTokenizerFast", "bpe", roberta_post=True),  # byte-level BPE
    "xlm-roberta": _sentencepiece_recipe("XLMRobertaTokenizerFast"),
    "camembert": _sentencepiece_recipe("CamembertTokenizerFast", tokenizer_kwargs={"additional_special_tokens": []}),
    "albert": TinyRecipe(
        "AlbertTokenizerFast",
        "unigram",
        ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
        {**_BERT_ROLES, **_CLS_SEP_AS_BOS_EOS, "pad_token": "<pad>", "unk_token": "<unk>"},
        _BERT_SINGLE,
        _BERT_PAIR,
        config={"embedding_size": 16},
        sentencepiece="albert",
    ),
    # DeBERTa-v3 layout: relative attention with position buckets, no absolute positions, no token types
    "deberta-v2": TinyRecipe(
        "DebertaV2TokenizerFast",
        "unigram",
        ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"),
        {**_BERT_ROLES, **_CLS_SEP_AS_BOS_EOS},
        _BERT_SINGLE,
        _BERT_PAIR,
        lowercase=False,
        config={
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "max_relative_positions": -1,
            "position_buckets": 32,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "type_vocab_size": 0,
        },
        sentencepiece="deberta-v2",
    ),
    # answerdotai/ModernBERT-base: OLMo's byte-level BPE (GPT-NeoX pre-tokenizer) with BERT's specials
    # behind the merges ([UNK] 50280 ... [MASK] 50284, lstrip), one token type, PreTrainedTokenizerFast.
    # Three layers, global attention every second one (0 and 2) and an 8-token local window in between,
    # so texts longer than 8 tokens take the sliding-window path; reference_compile off (no torch.compile).
    "modernbert": TinyRecipe(
        "PreTrainedTokenizerFast",
        "bpe",
        ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"),
        _BERT_ROLES,
        "[CLS] $A [SEP]",
        "[CLS] $A [SEP] $B [SEP]",
        lowercase=False,
        config={
            "num_hidden_layers": 3,
            "global_attn_every_n_layers": 2,
            "local_attention": 8,
            "classifier_pooling": "mean",
            "reference_compile": False,
        },
        byte_level="neox",
        specials_last=True,
        lstrip=("[MASK]",),
        tokenizer_kwargs=_NO_TOKEN_TYPES,
        config_ids={
            "bos_token_id": "cls_token_id",
            "eos_token_id": "sep_token_id",
            "cls_token_id": "cls_token_id",
            "sep_token_id": "sep_token_id",
        },
    ),
    # nomic-ai/nomic-embed-text-v1.5: bert-base-uncased's WordPiece tokenizer, two token types
    "nomic_bert": _wordpiece_recipe("BertTokenizerFast"),
    # EuroBERT/EuroBERT-210m: Llama 3's byte-level BPE and template (<|begin_of_text|> $A, no closing token),
    # specials behind the merges (128000 bos, 128001 eos = pad, 128002 <|mask|>), no unk, no token types
    "eurobert": TinyRecipe(
        "PreTrainedTokenizerFast",
        "bpe",
        ("<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"),
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
            "pad_token": "<|end_of_text|>",
            "mask_token": "<|mask|>",
        },
        "<|begin_of_text|> $A",
        "<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        lowercase=False,
        byte_level="llama3",
        specials_last=True,
        tokenizer_kwargs=_NO_TOKEN_TYPES,
        config_ids={**_BOS_EOS_IDS, "mask_token_id": "mask_token_id"},
    ),
    # Alibaba-NLP/gte-multilingual-base (model_type "gte"): XLM-RoBERTa's SentencePiece tokenizer
    "gte": _sentencepiece_recipe("XLMRobertaTokenizerFast", config_ids=_BOS_EOS_IDS),
}
