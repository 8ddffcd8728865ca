"""The exporter end to end: the real packaged MiniLM, task="auto", sentence-transformers folders,
progress on stderr, golden probes, and the tiny-model factory at benchmark size."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgebert.errors import UnsupportedModelError
from edgebert.export import export_model
from edgebert.export.source import inspect_source, pick_task
from edgebert.export.specs import is_transformers_v4
from edgebert.runtime.bundle import read_manifest, verify_checksums

# --- the real all-MiniLM-L6-v2 -------------------------------------------------------------------


def test_minilm_bundle(minilm_bundle: Path) -> None:
    manifest = read_manifest(minilm_bundle)
    verify_checksums(minilm_bundle, manifest)
    assert manifest.task == "embedding"
    assert manifest.architecture == "bert"
    assert manifest.inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert manifest.outputs == ("last_hidden_state",)
    assert manifest.max_length == 256  # sentence_bert_config.json max_seq_length
    assert manifest.pooling is not None
    assert manifest.pooling["mode"] == "mean" and manifest.pooling["normalize"] is True
    assert manifest.pooling["source"] == "sentence-transformers"
    assert manifest.parity["passed"] is True
    assert manifest.parity["max_abs_diff"]["last_hidden_state"] <= 1e-4
    assert manifest.parity["min_cosine"]["last_hidden_state"] > 0.99999
    assert manifest.parity["max_length_probe_tokens"] == 256
    opt = manifest.optimization
    assert opt["fused_ops"]["Attention"] == 6
    assert opt["fused_ops"]["SkipLayerNormalization"] == 12
    assert opt["fused_ops"]["BiasGelu"] == 6
    assert opt["chosen"] in ("none", "fused")
    assert set(opt["latency_ms_1thread"]) == {"1x8", "1x128", "32x16"}
    assert all(set(v) == {"none", "fused"} for v in opt["latency_ms_1thread"].values())
    geomean = opt["fused_over_plain_geomean"]
    assert opt["chosen"] == ("fused" if geomean < 0.95 else "none")
    # transformers 5 dropped the "Fast" suffix: its BertTokenizer is the tokenizers-backed class
    assert manifest.tokenizer["class"] == ("BertTokenizerFast" if is_transformers_v4() else "BertTokenizer")
    assert manifest.versions["opset"] == "17"
    assert manifest.source["sentence_transformers"] is True
    assert set(manifest.files) == {"model.onnx", "tokenizer.json"}


def _replay(bundle: Path) -> float:
    """Replay the manifest's golden probes with tokenizers + ONNX Runtime only (independent of the runtime)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = read_manifest(bundle)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    worst = 0.0
    for probe in manifest.probes:
        item = probe["input"]
        enc = tok.encode(item) if isinstance(item, str) else tok.encode(item[0], item[1])
        available = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
        }
        outs = session.run(list(manifest.outputs), {k: available[k] for k in manifest.inputs})
        for name, batch in zip(manifest.outputs, outs, strict=True):
            value = batch[0]  # probes store one item's outputs, without the batch axis
            expected = probe["outputs"][name]
            assert list(value.shape) == expected["shape"]
            got = value.ravel()[np.array(expected["index"], dtype=np.int64)]
            worst = max(worst, float(np.max(np.abs(got - np.array(expected["values"])))))
    return worst


def test_minilm_golden_probes_replay(minilm_bundle: Path) -> None:
    manifest = read_manifest(minilm_bundle)
    assert len(manifest.probes) >= 3
    assert any(isinstance(p["input"], list) for p in manifest.probes), "a text pair is among the probes"
    assert _replay(minilm_bundle) <= 1e-4


def test_minilm_task_auto_is_embedding(minilm_dir: Path) -> None:
    task, why = pick_task(inspect_source(minilm_dir))
    assert task == "embedding"
    assert "sentence-transformers" in why


# --- task="auto" --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "cls"),
    [
        ("sequence-classification", "BertForSequenceClassification"),
        ("token-classification", "BertForTokenClassification"),
        ("question-answering", "BertForQuestionAnswering"),
        ("fill-mask", "BertForMaskedLM"),
        ("feature-extraction", "BertModel"),
    ],
)
def test_task_auto_from_config(head: str, cls: str, tiny_model: Callable[..., Path]) -> None:
    source = inspect_source(tiny_model("bert", head))
    assert source.architectures == (cls,)
    task, why = pick_task(source)
    assert task == head
    assert cls in why


@pytest.mark.parametrize(
    ("architectures", "task", "reason"),
    [
        (["ElectraForPreTraining"], "feature-extraction", "discriminator"),
        (["BertForPreTraining"], "fill-mask", "BertForPreTraining"),
        (["BertForMultipleChoice"], "feature-extraction", "has no edgebert task"),
        ([], "feature-extraction", "names no architecture"),
    ],
)
def test_task_auto_other_heads(
    architectures: list[str], task: str, reason: str, tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    src = tmp_path / "model"
    shutil.copytree(tiny_model("bert", "feature-extraction"), src)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = architectures
    (src / "config.json").write_text(json.dumps(config), encoding="utf-8")
    picked, why = pick_task(inspect_source(src))
    assert picked == task
    assert reason in why


def test_task_auto_says_what_it_picked(
    tiny_model: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = export_model(tiny_model("electra", "token-classification"), tmp_path / "out", task="auto")
    assert manifest.task == "token-classification"
    err = capsys.readouterr().err
    assert "task: token-classification (auto: config.architectures = ElectraForTokenClassification)" in err
    # the progress steps, in order
    steps = [
        "load ELECTRA",
        "export to ONNX",
        "optimize: ONNX Runtime fusions",
        "verify the plain graph",
        "verify the fused graph",
        "parity:",
        "write bundle",
        "done",
    ]
    positions = [err.find(s) for s in steps]
    assert all(p >= 0 for p in positions), err
    assert positions == sorted(positions), err


def test_quiet_prints_nothing(
    tiny_model: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export_model(tiny_model("bert", "fill-mask"), tmp_path / "out", task="auto", quiet=True, optimize="none")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_cli_json(tiny_model: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgebert.cli import main

    src = tiny_model("distilbert", "question-answering")
    code = main(["export", str(src), str(tmp_path / "out"), "--json", "--quiet", "--optimize", "fused"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["task"] == "question-answering"
    assert data["outputs"] == ["start_logits", "end_logits"]
    assert data["inputs"] == ["input_ids", "attention_mask"]
    assert data["optimization"]["chosen"] == "fused"


# --- sentence-transformers folders ----------------------------------------------------------------


def _st_folder(src: Path, dest: Path, pooling: dict[str, bool], normalize: bool, max_seq: int) -> Path:
    shutil.copytree(src, dest)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (dest / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
    (dest / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq}))
    return dest


def test_sentence_transformers_folder(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    src = _st_folder(
        tiny_model("mpnet", "feature-extraction"),
        tmp_path / "st",
        {"pooling_mode_cls_token": True},
        normalize=False,
        max_seq=24,
    )
    manifest = export_model(src, tmp_path / "out", quiet=True, optimize="none")
    assert manifest.task == "embedding"
    assert manifest.pooling == {"mode": "cls", "normalize": False, "source": "sentence-transformers"}
    assert manifest.max_length == 24
    assert manifest.inputs == ("input_ids", "attention_mask")


def test_sentence_transformers_unsupported_modules(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    src = _st_folder(
        tiny_model("bert", "feature-extraction"),
        tmp_path / "st",
        {"pooling_mode_weightedmean_tokens": True},
        normalize=True,
        max_seq=24,
    )
    with pytest.raises(UnsupportedModelError, match="weightedmean"):
        export_model(src, tmp_path / "out", quiet=True)
    (src / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    modules = json.loads((src / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (src / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModelError, match=r"models\.Dense"):
        export_model(src, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


# --- the tiny-model factory -------------------------------------------------------------------------


def test_tiny_probes_replay(tiny_bundle: Callable[..., Path]) -> None:
    assert _replay(tiny_bundle("roberta", "question-answering")) <= 1e-4
    assert _replay(tiny_bundle("deberta-v2", "sequence-classification")) <= 1e-4


def test_make_tiny_model_rejects_bad_requests(tmp_path: Path) -> None:
    from tiny import make_tiny_model

    from edgebert.errors import EdgebertError

    with pytest.raises(UnsupportedModelError, match="Supported model types"):
        make_tiny_model("gpt2", "fill-mask", tmp_path / "a")
    with pytest.raises(EdgebertError, match="no task"):
        make_tiny_model("bert", "summarization", tmp_path / "b")
    with pytest.raises(EdgebertError, match="vocab_size=10 is smaller"):
        make_tiny_model("bert", "fill-mask", tmp_path / "c", vocab_size=10)


def test_make_tiny_model_is_deterministic(tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from tiny import make_tiny_model

    a = load_file(str(make_tiny_model("albert", "fill-mask", tmp_path / "a", seed=3) / "model.safetensors"))
    b = load_file(str(make_tiny_model("albert", "fill-mask", tmp_path / "b", seed=3) / "model.safetensors"))
    c = load_file(str(make_tiny_model("albert", "fill-mask", tmp_path / "c", seed=4) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_make_tiny_model_bert_base_size(tmp_path: Path) -> None:
    """The benchmark size: a random BERT-base (110M parameters, 30522-token vocabulary)."""
    from safetensors import safe_open
    from tiny import make_tiny_model
    from transformers import AutoConfig, AutoTokenizer

    folder = make_tiny_model(
        "bert",
        "feature-extraction",
        tmp_path / "base",
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        vocab_size=30522,
    )
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.intermediate_size, config.max_position_embeddings, config.vocab_size) == (3072, 512, 30522)
    assert config.initializer_range == 0.02  # Hugging Face's default at realistic sizes
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())  # noqa: SIM118
    assert 108_000_000 < params < 111_000_000
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert tok.model_max_length == 512
    ids = tok("edge models run fast " * 200, truncation=True)["input_ids"]
    assert len(ids) == 512 and max(ids) < config.vocab_size
    shutil.rmtree(folder)


# --- the fusion measurement script (scripts/research, not shipped) ---------------------------------------

MEASURE_FUSION = Path(__file__).resolve().parents[1] / "scripts" / "research" / "measure_fusion.py"


def _measure_fusion_main() -> Callable[[list[str]], int]:
    main: Callable[[list[str]], int] = runpy.run_path(str(MEASURE_FUSION), run_name="measure_fusion")["main"]
    return main


def test_measure_fusion_smoke(tiny_model: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    main = _measure_fusion_main()
    args = ["--rounds", "3", "--warmup", "1", "--shapes", "1x8,2x16", "--auto-repeats", "2"]
    assert main([str(tiny_model("bert", "feature-extraction")), *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["latency_ms_1thread"]) == {"1x8", "2x16"}
    assert all(set(row) == {"plain", "fused", "fused/plain p50"} for row in report["latency_ms_1thread"].values())
    assert report["ops_file"]["fused"]["Attention"] == 2
    assert "Attention" not in report["ops_file"]["plain"]
    assert len(report["auto_choice"]["repeats"]) == 2
    assert isinstance(report["auto_choice"]["stable"], bool)
    assert report["bundle_bytes"] > 0 and report["export_seconds"] > 0


def test_measure_fusion_runs_as_a_script(tmp_path: Path) -> None:
    """``python scripts/research/measure_fusion.py TARGET``: a bad target is a one-line error, exit code 1."""
    proc = subprocess.run(
        [sys.executable, str(MEASURE_FUSION), str(tmp_path / "missing"), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("edgebert: error: ") and "no such model folder" in proc.stderr
    assert "Traceback" not in proc.stderr
