"""Tiny random-weight models with tokenizers trained in code: for tests and benchmarks, no network.

``make_tiny_model("bert", "sequence-classification", dest)`` writes a Hugging Face folder
(config.json, model.safetensors, tokenizer files) that ``export_model`` accepts and that
``AutoTokenizer.from_pretrained(dest)`` / ``AutoModel.from_pretrained(dest)`` load offline, under
transformers 4.x and 5.x alike.

Every architecture gets the tokenizer family it really uses, with its special tokens and templates, trained
in a fraction of a second on a small built-in corpus and wrapped in the architecture's ``*TokenizerFast``
class (``PreTrainedTokenizerFast`` where the real checkpoint uses that; transformers 5 records most of these
under their tokenizers-backed names, e.g. ``BertTokenizer``, ``TokenizersBackend``). The recipes are in
tests/_tiny_recipes.py:

- WordPiece (BERT normalizer and pre-tokenizer): BERT, DistilBERT, ELECTRA, MobileBERT, MPNet, NomicBERT
  (bert-base-uncased's tokenizer)
- byte-level BPE: RoBERTa (GPT-2 style), ModernBERT (OLMo/GPT-NeoX style, [CLS]/[SEP]/[PAD]/[MASK]/[UNK]
  behind the merges), EuroBERT (Llama 3 style: regex split, <|begin_of_text|> template, <|mask|>)
- Unigram with a Metaspace pre-tokenizer (SentencePiece style): XLM-RoBERTa, CamemBERT, ALBERT, DeBERTa-v2,
  GTE (gte-multilingual-base uses XLM-RoBERTa's)

The default config is tiny (hidden 32, 2 layers, 4 heads; ModernBERT 3 layers with an 8-token local
attention window between global layers); keyword overrides pass through to the config in the usual Hugging
Face names (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``,
``max_position_embeddings``, ``vocab_size``; DistilBERT's own names are mapped), so
``make_tiny_model("bert", "feature-extraction", d, hidden_size=768, num_hidden_layers=12,
num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, vocab_size=30522)`` gives
a random model of BERT-base size. A model type the installed transformers lacks (NomicBERT, EuroBERT and
GTE need transformers 5) raises edgebert's UnsupportedModelError naming the release that has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _tiny_recipes import LLAMA3_SPLIT, RECIPES, TinyRecipe

from edgebert.errors import InputError
from edgebert.export.specs import arch_spec, check_transformers
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
    from tokenizers import AddedToken

    recipe = _recipe(model_type)
    specials = list(recipe.specials)
    lines = list(corpus) * 5
    trained = [] if recipe.specials_last else specials
    if recipe.family == "wordpiece":
        tok = _train_wordpiece(recipe, lines, vocab_size, trained)
    elif recipe.family == "bpe":
        # byte-level BPE needs the 256 bytes; with the specials behind them the total stays vocab_size
        tok = _train_bpe(recipe, lines, max(vocab_size - len(specials) + len(trained), 256 + len(trained)), trained)
    else:
        tok = _train_unigram(recipe, lines, vocab_size, trained)
    first = 0
    if recipe.specials_last:
        first = tok.get_vocab_size(with_added_tokens=False)
        tok.add_special_tokens(
            [AddedToken(t, special=True, normalized=False, lstrip=t in recipe.lstrip) for t in specials]
        )
    for i, token in enumerate(specials):
        if tok.token_to_id(token) != first + i:
            raise InputError(f"tokenizer training put {token!r} at id {tok.token_to_id(token)}, expected {first + i}.")
    tok.post_processor = _post_processor(recipe, tok)
    return tok


def _train_wordpiece(recipe: TinyRecipe, lines: list[str], vocab_size: int, specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token=recipe.roles["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=recipe.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        lines, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    return tok


def _train_bpe(recipe: TinyRecipe, lines: list[str], vocab_size: int, specials: list[str]) -> Any:
    """Byte-level BPE (no unknown token): GPT-2's pre-tokenizer, GPT-NeoX's (NFC first) or Llama 3's."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    if recipe.byte_level == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if recipe.byte_level == "neox":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return tok


def _train_unigram(recipe: TinyRecipe, lines: list[str], vocab_size: int, specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, trainers

    tok = Tokenizer(models.Unigram())
    normalizer, tok.pre_tokenizer = _sentencepiece_pipeline(recipe)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    unk = recipe.roles["unk_token"]
    tok.train_from_iterator(
        lines,
        trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False),
    )
    return tok


def _sentencepiece_pipeline(recipe: TinyRecipe) -> tuple[Any, Any]:
    """(normalizer or None, pre-tokenizer) as transformers 5 builds them for the SentencePiece classes."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    if recipe.sentencepiece == "deberta-v2":
        steps = [
            normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
            normalizers.NFC(),
            normalizers.Strip(left=False, right=True),
        ]
        return normalizers.Sequence(steps), pre_tokenizers.Sequence([metaspace])
    words = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    if recipe.sentencepiece == "albert":
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if recipe.lowercase:
            steps += [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
        return normalizers.Sequence(steps), words
    return None, words  # XLM-RoBERTa, CamemBERT, GTE


def _post_processor(recipe: TinyRecipe, tok: Any) -> Any:
    from tokenizers import processors

    if recipe.roberta_post:
        sep, cls = recipe.roles["sep_token"], recipe.roles["cls_token"]
        # sep and cls positionally: tokenizers 0.23 renamed the ``cls`` keyword to ``cls_token``
        return processors.RobertaProcessing(
            (sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)), add_prefix_space=False
        )
    used = {t for t in recipe.specials if t in recipe.single.split() + recipe.pair.replace(":1", "").split()}
    return processors.TemplateProcessing(
        single=recipe.single, pair=recipe.pair, special_tokens=[(t, tok.token_to_id(t)) for t in sorted(used)]
    )


def _recipe(model_type: str) -> TinyRecipe:
    arch_spec(model_type)  # UnsupportedModelError listing the supported types
    try:
        return RECIPES[model_type]
    except KeyError:
        raise InputError(f"no tiny-model recipe for {model_type!r}; add one to tests/_tiny_recipes.py.") from None


def make_tokenizer(model_type: str, max_length: int, vocab_size: int = DEFAULT_TOKENIZER_VOCAB) -> Any:
    """The trained tokenizer wrapped in the architecture's transformers fast tokenizer class."""
    import transformers

    recipe = _recipe(model_type)
    cls = getattr(transformers, recipe.tokenizer_class)
    return cls(
        tokenizer_object=train_tokenizer(model_type, vocab_size),
        model_max_length=max_length,
        **recipe.roles,
        **recipe.tokenizer_kwargs,
    )


def _special_ids(recipe: TinyRecipe, tok: Any) -> dict[str, int]:
    """The config's special-token ids, taken from the tokenizer (pad always; bos/eos/cls/sep/mask per recipe)."""
    ids = {"pad_token_id": tok.pad_token_id}
    for name, attribute in recipe.config_ids.items():
        ids[name] = getattr(tok, attribute)
    return ids


def make_tiny_model(
    model_type: str,
    task: str,
    dest: str | Path,
    *,
    num_labels: int | None = None,
    seed: int = 0,
    tokenizer_vocab_size: int = DEFAULT_TOKENIZER_VOCAB,
    **config_overrides: Any,
) -> Path:
    """Write a random-weight model folder for ``model_type`` and ``task``; returns ``dest``.

    ``config_overrides`` are config values (Hugging Face names); ``vocab_size`` defaults to the
    trained tokenizer's vocabulary and may be larger (the extra rows are never produced by the
    tokenizer, which is fine for timing and parity). Weights are drawn with Hugging Face's
    ``initializer_range`` (0.02) unless overridden; tests that must tell a right graph from a wrong one
    pass ``initializer_range=SENSITIVE_INITIALIZER_RANGE``. The weights depend only on ``seed``, but the
    trained vocabulary may differ between processes (the tokenizers trainer breaks frequency ties in hash
    order), so outputs on real text vary from run to run: tests compare with a reference computed in the
    same process, never with stored values or value ranges.
    """
    import torch
    import transformers

    spec = arch_spec(model_type)
    if task not in TASKS or task not in spec.tasks:
        raise InputError(f"{spec.name} has no task {task!r}; it supports {', '.join(spec.tasks)}.")
    check_transformers(model_type)
    recipe = _recipe(model_type)
    if task == "question-answering":
        num_labels = 2  # start and end logits
    elif num_labels is None:
        num_labels = 1 if task == "rerank" else 3  # a cross-encoder: one relevance logit
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
    values.update(_special_ids(recipe, tok))
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
