"""Every registered architecture x every task it supports: export a tiny random model and check the bundle.

Parity is checked twice: by the exporter itself (it raises ParityError, so a written bundle passed), and
here, independently, by running the exported graph with ONNX Runtime at two shapes that differ from the
export shapes (dynamic batch and sequence axes) and comparing with the PyTorch model, padding masked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny import SENSITIVE_INITIALIZER_RANGE

from edgebert.errors import UnsupportedModelError
from edgebert.export.specs import ARCHITECTURES, check_transformers
from edgebert.runtime.tasks import TASKS, get_task


def _installed(model_type: str) -> bool:
    """Whether the installed transformers has the model type (test_modern_encoders checks the error if not)."""
    try:
        check_transformers(model_type)
    except UnsupportedModelError:
        return False
    return True


ALL_CASES = [(model_type, task) for model_type, spec in ARCHITECTURES.items() for task in spec.tasks]
CASES = [(model_type, task) for model_type, task in ALL_CASES if _installed(model_type)]

# Independent expectations, written by hand: which inputs each architecture really uses.
TYPE_IDS = ("input_ids", "attention_mask", "token_type_ids")
NO_TYPE_IDS = ("input_ids", "attention_mask")
EXPECTED_INPUTS: dict[str, tuple[str, ...]] = {
    "bert": TYPE_IDS,
    "distilbert": NO_TYPE_IDS,  # no token type embeddings at all
    "roberta": NO_TYPE_IDS,  # type_vocab_size 1
    "xlm-roberta": NO_TYPE_IDS,
    "camembert": NO_TYPE_IDS,
    "albert": TYPE_IDS,
    "electra": TYPE_IDS,
    "mpnet": NO_TYPE_IDS,  # forward() takes no token_type_ids
    "mobilebert": TYPE_IDS,
    "deberta-v2": NO_TYPE_IDS,  # type_vocab_size 0
    "modernbert": NO_TYPE_IDS,  # no token type embeddings
    "nomic_bert": TYPE_IDS,  # type_vocab_size 2
    "eurobert": NO_TYPE_IDS,
    "gte": NO_TYPE_IDS,  # type_vocab_size 1
}
# tokenizer class (the transformers 4.x name; see test_tiny_tokenizer_family for 5.x), tokenizers model
EXPECTED_TOKENIZER: dict[str, tuple[str, str]] = {
    "bert": ("BertTokenizerFast", "WordPiece"),
    "distilbert": ("DistilBertTokenizerFast", "WordPiece"),
    "electra": ("ElectraTokenizerFast", "WordPiece"),
    "mobilebert": ("MobileBertTokenizerFast", "WordPiece"),
    "mpnet": ("MPNetTokenizerFast", "WordPiece"),
    "roberta": ("RobertaTokenizerFast", "BPE"),
    "xlm-roberta": ("XLMRobertaTokenizerFast", "Unigram"),
    "camembert": ("CamembertTokenizerFast", "Unigram"),
    "albert": ("AlbertTokenizerFast", "Unigram"),
    "deberta-v2": ("DebertaV2TokenizerFast", "Unigram"),
    "modernbert": ("PreTrainedTokenizerFast", "BPE"),  # OLMo's byte-level BPE with BERT's special tokens
    "nomic_bert": ("BertTokenizerFast", "WordPiece"),  # bert-base-uncased's
    "eurobert": ("PreTrainedTokenizerFast", "BPE"),  # Llama 3's
    "gte": ("XLMRobertaTokenizerFast", "Unigram"),  # gte-multilingual-base uses XLM-RoBERTa's
}
# Fusions ONNX Runtime's BERT optimizer achieves on each tiny 2-layer export (minimums; guards regressions).
# MPNet (relative position bias) and MobileBERT (bottleneck, NoNorm) attention is not matched by ORT's patterns
# (DistilBERT's is, when exported through its sdpa path); ALBERT's first attention block reads the embedding
# projection rather than a LayerNorm and is not fused (the other n-1 are); DeBERTa-v2 has no ORT fusion at all.
EXPECTED_FUSED: dict[str, dict[str, int]] = {
    "bert": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "EmbedLayerNormalization": 1},
    "distilbert": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "EmbedLayerNormalization": 1},
    "roberta": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2},
    "xlm-roberta": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2},
    "camembert": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2},
    "albert": {"Attention": 1, "SkipLayerNormalization": 4, "FastGelu": 2},
    "electra": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "EmbedLayerNormalization": 1},
    "mpnet": {"SkipLayerNormalization": 4, "BiasGelu": 2},
    "mobilebert": {},
    "deberta-v2": {},
    # the modern encoders: rotary attention is not matched; their LayerNorm/GELU patterns are (3 layers for
    # ModernBERT's tiny local/global alternation); EuroBERT's RMSNorm and SiLU GLU match nothing
    "modernbert": {"SkipLayerNormalization": 6, "Gelu": 3},
    "nomic_bert": {"SkipLayerNormalization": 4},
    "eurobert": {},
    "gte": {"SkipLayerNormalization": 4, "Gelu": 2},
}
NUM_LABELS = {"sequence-classification": 3, "token-classification": 3, "question-answering": None}


def test_every_registered_architecture_has_tests() -> None:
    """Meta-test: a new entry in ARCHITECTURES must come with expectations here and a tiny-model recipe."""
    from tiny import RECIPES

    registered = set(ARCHITECTURES)
    assert registered == set(EXPECTED_INPUTS), "add the new architecture to EXPECTED_INPUTS"
    assert registered == set(EXPECTED_TOKENIZER), "add the new architecture to EXPECTED_TOKENIZER"
    assert registered == set(EXPECTED_FUSED), "add the new architecture to EXPECTED_FUSED"
    assert registered == set(RECIPES), "add a tiny-model recipe to tests/tiny.py RECIPES"
    tested = {(m, t) for m, t in ALL_CASES}
    for model_type, spec in ARCHITECTURES.items():
        assert spec.tasks, model_type
        for task in spec.tasks:
            assert task in TASKS
            assert (model_type, task) in tested
    assert len(CASES) >= 10 * 6


def _torch_model(folder: Path, task: str) -> Any:
    import transformers

    auto = getattr(transformers, get_task(task).head)
    return auto.from_pretrained(str(folder), attn_implementation="eager").eval()


def _feeds(rng: np.random.Generator, tok: Any, inputs: tuple[str, ...], lengths: list[int]) -> dict[str, np.ndarray]:
    """A padded batch of random real-token ids with the tokenizer's specials at both ends."""
    vocab = len(tok)
    special = set(tok.all_special_ids)
    ordinary = np.array([i for i in range(vocab) if i not in special])
    seq = max(lengths)
    ids = np.full((len(lengths), seq), tok.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id  # EuroBERT: bos, no sep
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.choice(ordinary, size=n)
        ids[row, 0] = first
        if tok.sep_token_id is not None:
            ids[row, n - 1] = tok.sep_token_id
        mask[row, :n] = 1
        types[row, n // 2 : n] = 1
    available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: available[name] for name in inputs}


# independent expectation: these outputs have no sequence axis
ROW_PER_TEXT = {"sequence-classification", "rerank", "sparse-embedding"}
LABEL_COUNT = {"sequence-classification": 3, "token-classification": 3, "rerank": 1}  # tiny.py's defaults


def _reference(ref: Any, name: str, task: str, mask: np.ndarray) -> np.ndarray:
    """The PyTorch output the graph's ``name`` must equal; SPLADE pooled here, independently of the exporter:
    max over real tokens of log(1 + relu(masked-LM logits))."""
    if get_task(task).head_kind == "splade":
        logits = ref["logits"].numpy()
        return np.asarray(np.log1p(np.maximum(logits * mask[..., None], 0)).max(axis=1))
    return np.asarray(ref[name].numpy())


def _rows(value: np.ndarray, task: str, row: int, n: int) -> np.ndarray:
    return value[row] if task in ROW_PER_TEXT else value[row, :n]


def _check_manifest(manifest: Any, model_type: str, task: str) -> None:
    """What was exported, and the exporter's own parity report."""
    outputs = get_task(task).output_names
    assert manifest.task == task
    assert manifest.architecture == model_type
    assert manifest.inputs == EXPECTED_INPUTS[model_type]
    assert manifest.outputs == outputs
    assert manifest.parity["passed"] is True
    assert set(manifest.parity["max_abs_diff"]) == set(outputs)
    assert all(0 <= v <= manifest.parity["atol"] <= 1e-4 for v in manifest.parity["max_abs_diff"].values())
    assert all(v > 0.99999 for v in manifest.parity["min_cosine"].values())
    assert manifest.max_length == 64 - ARCHITECTURES[model_type].position_offset
    assert manifest.parity["max_length_probe_tokens"] == manifest.max_length
    assert len(manifest.probes) >= 2
    if task in LABEL_COUNT:
        assert manifest.labels is not None and len(manifest.labels) == LABEL_COUNT[task]
    else:
        assert manifest.labels is None
    if task == "embedding":
        assert manifest.pooling is not None and manifest.pooling["mode"] == "mean"
    else:
        assert manifest.pooling is None


def _check_graph(graph: Any, manifest: Any, model_type: str, task: str) -> None:
    """Declared inputs/outputs, dynamic axes, and the fusions the manifest records."""
    assert tuple(i.name for i in graph.input) == manifest.inputs
    assert tuple(o.name for o in graph.output) == manifest.outputs
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param for d in dims), f"{value.name} must have dynamic batch and sequence"
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param, f"{value.name}: batch axis must be dynamic"
        if task in ROW_PER_TEXT:
            width = LABEL_COUNT.get(task) or (manifest.probes[0]["outputs"][value.name]["shape"][-1])
            assert len(dims) == 2 and dims[1].dim_value == width, f"{value.name}: only the batch axis is dynamic"
        else:
            assert dims[1].dim_param, f"{value.name}: sequence axis must be dynamic"
    fused_ops = manifest.optimization.get("fused_ops", {})
    counted = {n.op_type for n in graph.node}
    for op, n in EXPECTED_FUSED[model_type].items():
        assert fused_ops.get(op, 0) >= n, f"{model_type}: expected >= {n} {op}, manifest records {fused_ops}"
        assert op in counted
    assert manifest.optimization["chosen"] == ("fused" if "fused_ops" in manifest.optimization else "none")


def _check_new_shapes(folder: Path, bundle: Path, manifest: Any, task: str) -> None:
    """Independent parity at two new shapes (batch 1 x 5 and batch 3 x up to 23, padded rows)."""
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = _torch_model(folder, task)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for lengths in ([5], [23, 9, 14]):
        feeds = _feeds(rng, tok, manifest.inputs, lengths)
        got = dict(zip(manifest.outputs, session.run(list(manifest.outputs), feeds), strict=True))
        with torch.inference_mode():
            ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        for name in manifest.outputs:
            want = _reference(ref, name, task, feeds["attention_mask"])
            assert got[name].shape == want.shape, name
            for row, n in enumerate(lengths):
                diff = np.max(np.abs(_rows(want, task, row, n) - _rows(got[name], task, row, n)))
                assert diff <= 1e-4, f"{name} row {row}: {diff}"
            if len(lengths) > 1:
                # the comparison is meaningful: different inputs give outputs far apart (>> atol)
                first, second = (_rows(want, task, row, min(lengths)) for row in (0, 1))
                # one relevance logit is a single number: it must still move well beyond the 1e-4 tolerance
                apart = 1e-2 if first.size > 1 else 2e-4
                assert np.max(np.abs(first - second)) > apart, f"{name}: outputs barely depend on the input"


@pytest.mark.parametrize(("model_type", "task"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_tiny_export_parity(
    model_type: str, task: str, tiny_model: Callable[..., Path], tiny_bundle: Callable[..., Path]
) -> None:
    import onnx

    from edgebert.runtime.bundle import read_manifest, verify_checksums

    folder = tiny_model(model_type, task, initializer_range=SENSITIVE_INITIALIZER_RANGE)
    bundle = tiny_bundle(model_type, task, initializer_range=SENSITIVE_INITIALIZER_RANGE)
    manifest = read_manifest(bundle)
    verify_checksums(bundle, manifest)
    _check_manifest(manifest, model_type, task)
    _check_graph(onnx.load(str(bundle / "model.onnx")).graph, manifest, model_type, task)
    _check_new_shapes(folder, bundle, manifest, task)


# How each architecture's tokenizer frames a text and a pair: its special tokens, the texts' own tokens as $A, $B.
_BERT_FRAMES = ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]")
_ROBERTA_FRAMES = ("<s> $A </s>", "<s> $A </s> </s> $B </s>")
EXPECTED_FRAMES = {
    **dict.fromkeys(("bert", "distilbert", "electra", "mobilebert", "nomic_bert", "modernbert"), _BERT_FRAMES),
    **dict.fromkeys(("albert", "deberta-v2"), _BERT_FRAMES),
    **dict.fromkeys(("roberta", "xlm-roberta", "camembert", "mpnet", "gte"), _ROBERTA_FRAMES),
    # Llama 3's template: a bos before each text, no closing token
    "eurobert": ("<|begin_of_text|> $A", "<|begin_of_text|> $A <|begin_of_text|> $B"),
}


def _frame(tok: Any, ids: list[int]) -> str:
    special = set(tok.all_special_ids) - {tok.unk_token_id}
    out: list[str] = []
    for i in ids:
        if i in special:
            out.append(tok.convert_ids_to_tokens(i))
        elif not out or not out[-1].startswith("$"):
            out.append("$" + "AB"[sum(t.startswith("$") for t in out)])
    return " ".join(out)


def _kinds(pre_tokenizer: dict[str, Any]) -> list[str]:
    """The pre-tokenizer's type and those of the steps of a Sequence."""
    return [pre_tokenizer["type"], *(k for step in pre_tokenizer.get("pretokenizers", []) for k in _kinds(step))]


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_tiny_tokenizer_family(model_type: str, tiny_model: Callable[..., Path]) -> None:
    """The tiny model's tokenizer is the architecture's real family, loadable offline with AutoTokenizer."""
    import json

    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from edgebert.errors import UnsupportedModelError
    from edgebert.export.specs import check_transformers

    try:
        check_transformers(model_type)
    except UnsupportedModelError as e:
        pytest.skip(str(e))
    folder = tiny_model(model_type, "fill-mask")
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    name, family = EXPECTED_TOKENIZER[model_type]
    # transformers 5 folds the *TokenizerFast names into one tokenizers-backed class each (BertTokenizerFast and
    # ElectraTokenizerFast are BertTokenizer, PreTrainedTokenizerFast is TokenizersBackend): the class the name
    # stands for in the installed transformers is the one AutoTokenizer must load
    expected = getattr(transformers, name)
    assert type(tok) is expected, f"{type(tok).__name__} loaded, {expected.__name__} ({name}) expected"
    assert tok.is_fast
    # and the one tokenizer_config.json records (4.x writes the slow name where a slow class exists)
    recorded = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["tokenizer_class"]
    assert recorded.removesuffix("Fast") == expected.__name__.removesuffix("Fast")
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["model"]["type"] == family
    if family == "Unigram":
        assert "Metaspace" in _kinds(data["pre_tokenizer"])
    if family == "BPE":
        assert "ByteLevel" in _kinds(data["pre_tokenizer"])
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    assert config.model_type == model_type
    assert tok.pad_token_id == config.pad_token_id
    assert len(tok) <= config.vocab_size
    for field in ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
        value = getattr(config, field, None)  # every special id the config names is one of the tokenizer's
        assert value is None or value in tok.all_special_ids, (field, value)
    assert tok.mask_token_id is not None
    single, pair = EXPECTED_FRAMES[model_type]
    assert _frame(tok, tok("naïve café 東京 🙂")["input_ids"]) == single
    assert _frame(tok, tok("naïve café 東京 🙂", "a second text")["input_ids"]) == pair
    assert (
        tok.decode(tok("the quick brown fox")["input_ids"], skip_special_tokens=True).strip() == "the quick brown fox"
    )
