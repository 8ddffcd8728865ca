"""Tiny random-weight models with tokenizers trained in code: for tests and benchmarks, no network.

``make_tiny_model("bert", "sequence-classification", dest)`` writes a Hugging Face folder
(config.json, model.safetensors, tokenizer files) that ``export_model`` accepts and that
``AutoTokenizer.from_pretrained(dest)`` / ``AutoModel.from_pretrained(dest)`` load offline.

Every architecture gets the tokenizer family it really uses, trained in a fraction of a second on a
small built-in corpus and wrapped in the architecture's ``*TokenizerFast`` class:

- WordPiece (BERT normalizer and pre-tokenizer): BERT, DistilBERT, ELECTRA, MobileBERT, MPNet
- byte-level BPE: RoBERTa
- Unigram with a Metaspace pre-tokenizer (SentencePiece style): XLM-RoBERTa, CamemBERT, ALBERT, DeBERTa-v2

The default config is tiny (hidden 32, 2 layers, 4 heads); keyword overrides pass through to the
config in the usual Hugging Face names (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
``intermediate_size``, ``max_position_embeddings``, ``vocab_size``; DistilBERT's own names are mapped),
so ``make_tiny_model("bert", "feature-extraction", d, hidden_size=768, num_hidden_layers=12,
num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, vocab_size=30522)`` gives
a random model of BERT-base size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgebert.errors import InputError
from edgebert.export.specs import arch_spec
from edgebert.runtime.tasks import TASKS

CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "edge models run fast on small devices while keeping quality high",
    "naïve café in zürich, são paulo and kraków",
    "Naïve Café in Zürich — São Paulo, Kraków; ÅÄÖ accents",
    "東京 北京 ソウル 🙂 emoji text 東京と北京",
    "how tall is the tower? the tower is 330 metres tall",
    "The tower, finished in 1889, is 330 metres tall and stands in Paris.",
    "a great movie with an awful ending and a wonderful cast",
    "hello world ok short long text numbers 1889 2024 42",
    "Hello world! OK, this is fine. What a terrible, boring film.",
    "sentences about weather, football, music, cooking, trains and small language models",
)

Family = Literal["wordpiece", "bpe", "unigram"]


@dataclass(frozen=True)
class TinyRecipe:
    """How to build the tokenizer and a tiny config for one ``model_type``.

    Attributes:
        tokenizer_class: the transformers ``*TokenizerFast`` class that wraps the trained tokenizer.
        family: tokenizer model family (WordPiece, byte-level BPE or Unigram/Metaspace).
        specials: special tokens in id order (the first ids of the vocabulary).
        roles: tokenizer keyword -> special token (pad_token, cls_token, ...).
        single, pair: post-processor templates (``$A``/``$B`` with optional ``:type`` suffix).
        lowercase: lowercase in the normalizer (BERT uncased, ALBERT).
        config: tiny config values for this architecture, applied before user overrides.
    """

    tokenizer_class: str
    family: Family
    specials: tuple[str, ...]
    roles: dict[str, str]
    single: str
    pair: str
    lowercase: bool = True
    config: dict[str, Any] = field(default_factory=dict)


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


def _wordpiece_recipe(cls: str, **config: Any) -> TinyRecipe:
    return TinyRecipe(cls, "wordpiece", _BERT_SPECIALS, _BERT_ROLES, _BERT_SINGLE, _BERT_PAIR, config=config)


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
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "[UNK]",
            "mask_token": "<mask>",
        },
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
    ),
    "roberta": TinyRecipe(
        "RobertaTokenizerFast",
        "bpe",
        _ROBERTA_SPECIALS,
        _ROBERTA_ROLES,
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
        lowercase=False,
        config={"type_vocab_size": 1},
    ),
    "xlm-roberta": TinyRecipe(
        "XLMRobertaTokenizerFast",
        "unigram",
        _ROBERTA_SPECIALS,
        _ROBERTA_ROLES,
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
        lowercase=False,
        config={"type_vocab_size": 1},
    ),
    "camembert": TinyRecipe(
        "CamembertTokenizerFast",
        "unigram",
        _ROBERTA_SPECIALS,
        _ROBERTA_ROLES,
        _ROBERTA_SINGLE,
        _ROBERTA_PAIR,
        lowercase=False,
        config={"type_vocab_size": 1},
    ),
    "albert": TinyRecipe(
        "AlbertTokenizerFast",
        "unigram",
        ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
        {**_BERT_ROLES, **_CLS_SEP_AS_BOS_EOS, "pad_token": "<pad>", "unk_token": "<unk>"},
        _BERT_SINGLE,
        _BERT_PAIR,
        config={"embedding_size": 16},
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
    ),
}

TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
}
# Hugging Face initialises weights with std 0.02; at hidden size 32 the heads' outputs then barely depend on
# the input (classifier logits of two different texts differ by ~1e-4, no more than the parity tolerance).
# Pass initializer_range=SENSITIVE_INITIALIZER_RANGE for tests that must tell a right graph from a wrong one.
SENSITIVE_INITIALIZER_RANGE = 0.2
# DistilBERT's config uses its own names
_DISTILBERT_NAMES = {
    "hidden_size": "dim",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "intermediate_size": "hidden_dim",
}
DEFAULT_TOKENIZER_VOCAB = 400


def train_tokenizer(
    model_type: str, vocab_size: int = DEFAULT_TOKENIZER_VOCAB, corpus: tuple[str, ...] = CORPUS
) -> Any:
    """Train the architecture's tokenizer family on ``corpus``; returns a ``tokenizers.Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    recipe = _recipe(model_type)
    specials = list(recipe.specials)
    unk = recipe.roles["unk_token"]
    lines = list(corpus) * 5
    if recipe.family == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=recipe.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(
            lines, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
        )
    elif recipe.family == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            lines,
            trainers.BpeTrainer(
                vocab_size=max(vocab_size, 256 + len(specials)),
                special_tokens=specials,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
    else:
        tok = Tokenizer(models.Unigram())
        steps: list[Any] = [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
        if recipe.lowercase:
            steps += [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.train_from_iterator(
            lines,
            trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False),
        )
    for i, token in enumerate(specials):
        if tok.token_to_id(token) != i:
            raise InputError(f"tokenizer training put {token!r} at id {tok.token_to_id(token)}, expected {i}.")
    if recipe.family == "bpe":
        tok.post_processor = processors.RobertaProcessing(
            sep=("</s>", tok.token_to_id("</s>")), cls=("<s>", tok.token_to_id("<s>")), add_prefix_space=False
        )
    else:
        used = {t for t in specials if t in recipe.single or t in recipe.pair}
        tok.post_processor = processors.TemplateProcessing(
            single=recipe.single, pair=recipe.pair, special_tokens=[(t, tok.token_to_id(t)) for t in sorted(used)]
        )
    return tok


def _recipe(model_type: str) -> TinyRecipe:
    arch_spec(model_type)  # UnsupportedModelError listing the supported types
    try:
        return RECIPES[model_type]
    except KeyError:
        raise InputError(f"no tiny-model recipe for {model_type!r}; add one to tests/tiny.py RECIPES.") from None


def make_tokenizer(model_type: str, max_length: int, vocab_size: int = DEFAULT_TOKENIZER_VOCAB) -> Any:
    """The trained tokenizer wrapped in the architecture's transformers fast tokenizer class."""
    import transformers

    recipe = _recipe(model_type)
    cls = getattr(transformers, recipe.tokenizer_class)
    extra: dict[str, Any] = {}
    if model_type == "camembert":
        extra["additional_special_tokens"] = []
    return cls(
        tokenizer_object=train_tokenizer(model_type, vocab_size), model_max_length=max_length, **recipe.roles, **extra
    )


def make_tiny_model(
    model_type: str,
    task: str,
    dest: str | Path,
    *,
    num_labels: int = 3,
    seed: int = 0,
    tokenizer_vocab_size: int = DEFAULT_TOKENIZER_VOCAB,
    **config_overrides: Any,
) -> Path:
    """Write a random-weight model folder for ``model_type`` and ``task``; returns ``dest``.

    ``config_overrides`` are config values (Hugging Face names); ``vocab_size`` defaults to the
    trained tokenizer's vocabulary and may be larger (the extra rows are never produced by the
    tokenizer, which is fine for timing and parity). Weights are drawn with Hugging Face's
    ``initializer_range`` (0.02) unless overridden; tests that must tell a right graph from a wrong one
    pass ``initializer_range=SENSITIVE_INITIALIZER_RANGE``. The weights depend only on ``seed``.
    """
    import torch
    import transformers

    spec = arch_spec(model_type)
    if task not in TASKS or task not in spec.tasks:
        raise InputError(f"{spec.name} has no task {task!r}; it supports {', '.join(spec.tasks)}.")
    recipe = _recipe(model_type)
    if task == "question-answering":
        num_labels = 2  # start and end logits
    values: dict[str, Any] = {**TINY_CONFIG, **recipe.config, "num_labels": num_labels, **config_overrides}
    requested_vocab = values.pop("vocab_size", None)
    positions = int(values["max_position_embeddings"])
    tok = make_tokenizer(
        model_type, positions - spec.position_offset, min(tokenizer_vocab_size, requested_vocab or tokenizer_vocab_size)
    )
    tok_vocab = len(tok)
    vocab_size = int(requested_vocab) if requested_vocab is not None else tok_vocab
    if vocab_size < tok_vocab:
        raise InputError(
            f"vocab_size={vocab_size} is smaller than the trained tokenizer's {tok_vocab} tokens; "
            f"give at least {tok_vocab}."
        )
    values["vocab_size"] = vocab_size
    values["pad_token_id"] = tok.pad_token_id
    if model_type == "distilbert":
        values = {_DISTILBERT_NAMES.get(k, k): v for k, v in values.items()}
    config = transformers.AutoConfig.for_model(model_type, **values)
    dest = Path(dest)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, TASKS[task].head).from_config(config)
    model.config.architectures = [type(model).__name__]
    model.eval()
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest
