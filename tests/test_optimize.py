"""``edgebert optimize``: candidates, the decision table, the choice, the bundle's artifacts and how they load."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import fake_cpu_without_bf16, openvino_has_bf16, require
from _export_util import cli

import edgebert
from edgebert.errors import BundleError, ConfigError, OutputExistsError
from edgebert.quantize.candidates import Candidate, Plan, build_candidates
from edgebert.quantize.optimize import OptimizeConfig, choose, optimize_model
from edgebert.runtime import artifacts
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.probes import verify_bundle

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "edge", "models", "run", "fast", "on",
         "small", "devices", "a", "great", "movie", "awful"]


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return list(dict.fromkeys(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 18)))) for _ in range(n)))


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(_texts(120, 3)) + "\n", encoding="utf-8")
    return path


FAST = {"rounds": 3, "quiet": True}


def _row(name: str, score: float, ok: bool) -> dict[str, Any]:
    engine, precision = name.rsplit("-", 1)
    return {"name": name, "engine": engine, "precision": precision, "score_ms": score, "meets_budget": ok}


def _cands(*names: str) -> list[Candidate]:
    return [Candidate(n, n.rsplit("-", 1)[0], n.rsplit("-", 1)[1], path=Path(n)) for n in names]


# ------------------------------------------------------------------------------------------- the choice
def test_choose_takes_the_fastest_within_budget_and_the_fastest_ort_for_model_onnx() -> None:
    rows = [_row("onnxruntime-fp32", 10, True), _row("onnxruntime-int8", 4, False), _row("onnxruntime-mixed", 6, True),
            _row("openvino-int8", 3, False), _row("openvino-fp32", 5, True)]
    cands = _cands(*(r["name"] for r in rows))
    winner, fallback = choose(rows, cands)
    assert (winner.name, fallback.name) == ("openvino-fp32", "onnxruntime-mixed")
    rows[3]["meets_budget"] = True  # now the fastest overall passes
    assert choose(rows, cands)[0].name == "openvino-int8"


def test_choose_falls_back_to_fp32_when_nothing_else_meets_the_budget() -> None:
    rows = [_row("onnxruntime-fp32", 10, True), _row("onnxruntime-int8", 4, False)]
    winner, fallback = choose(rows, _cands("onnxruntime-fp32", "onnxruntime-int8"))
    assert winner.name == fallback.name == "onnxruntime-fp32"


@pytest.mark.parametrize("field,value,needle", [
    ("profile", "fastest", "profile='fastest'"), ("threads", 0, "threads=0"),
    ("engines", ("tensorrt",), "engines=['tensorrt']"), ("precisions", ("fp16",), "precisions=['fp16']"),
    ("rounds", 1, "rounds=1"),
])
def test_bad_config_is_a_config_error(field: str, value: Any, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        OptimizeConfig(**{field: value})


# ------------------------------------------------------------------------------------------- end to end (ORT)
def test_optimize_onnxruntime_writes_decision_table_and_runs(
    tiny_bundle: Callable[..., Path], tmp_path: Path, texts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tiny_bundle("bert", "embedding"), tmp_path / "best"
    m = optimize_model(src, out, engines=("onnxruntime",), precisions=("fp32", "int8"), calibration=texts_file,
                       min_cosine=0.9, **FAST)
    table = dict(m.autotune or {})
    names = [r["name"] for r in table["candidates"]]
    assert names == ["onnxruntime-fp32", "onnxruntime-int8"]
    for row in table["candidates"]:
        assert set(row["latency_ms"]) == {"1x16", "1x128"} or all(k.startswith("1x") for k in row["latency_ms"])
        assert all(v > 0 for v in row["latency_ms"].values())
        assert row["accuracy"]["texts"] > 0 and row["accuracy"]["cosine_mean"] <= 1.0 + 1e-6
    passing = [r for r in table["candidates"] if r["meets_budget"]]
    assert table["chosen"] == min(passing, key=lambda r: r["score_ms"])["name"]
    ref = next(r for r in table["candidates"] if r["name"] == "onnxruntime-fp32")
    assert ref["accuracy"]["cosine_min"] > 0.99999  # the reference scored against itself
    assert table["budget"] == {"min_cosine": 0.9} and table["threads"] == 1
    assert m.artifacts[0]["file"] == "model.onnx" and m.artifacts[0]["engine"] == "onnxruntime"
    assert m.precision == ("int8" if table["chosen"] == "onnxruntime-int8" else "fp32")
    assert all(r.ok for r in verify_bundle(out))
    got, want = edgebert.load(out)(["a short text", "another one"]), edgebert.load(src)(["a short text", "another one"])
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == want.shape and cos.min() > 0.9
    chosen = next(r for r in table["candidates"] if r["name"] == table["chosen"])
    code, info, _ = cli(["info", str(out)], capsys)  # the chosen candidate's own figures, not only model.onnx's
    assert code == 0
    line = next(ln for ln in info.splitlines() if ln.startswith("chosen"))
    assert table["chosen"] in line and f"1x16 {chosen['latency_ms']['1x16']} ms" in line
    assert f"cosine_min {chosen['accuracy']['cosine_min']:.4f}" in line


def test_optimize_refuses_existing_output_and_wrong_budget(
    tiny_bundle: Callable[..., Path], tmp_path: Path, texts_file: Path
) -> None:
    out = tmp_path / "exists"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(OutputExistsError):
        optimize_model(tiny_bundle("bert", "embedding"), out, calibration=texts_file, **FAST)
    assert (out / "x").read_text() == "keep me"
    with pytest.raises(ConfigError, match="min_cosine applies to embedding bundles"):
        optimize_model(tiny_bundle("bert", "sequence-classification"), tmp_path / "c", min_cosine=0.99,
                       calibration=texts_file, **FAST)
    assert not (tmp_path / "c").exists()


def test_optimize_cli_prints_the_table(
    tiny_bundle: Callable[..., Path], tmp_path: Path, texts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    code, stdout, err = cli(["optimize", str(tiny_bundle("bert", "sequence-classification")), str(out),
                             "--engines", "onnxruntime", "--precisions", "fp32", "int8", "--calibration",
                             str(texts_file), "--rounds", "3", "--quiet", "--max-accuracy-drop", "100"], capsys)
    assert code == 0, err
    assert "onnxruntime-fp32" in stdout and "onnxruntime-int8" in stdout and "<- chosen" in stdout
    assert "max_accuracy_drop 100" in stdout
    code, _, err = cli(["optimize", str(tiny_bundle("bert", "embedding")), str(tmp_path / "t"), "--threads", "0"],
                       capsys)
    assert code == 1 and "--threads 0" in err


# ------------------------------------------------------------------------------------------- artifacts
def _with_artifacts(src: Path, dest: Path, entries: list[dict[str, Any]]) -> Path:
    import shutil

    shutil.copytree(src, dest)
    data = json.loads((dest / "edgebert.json").read_text())
    data["artifacts"] = entries
    (dest / "edgebert.json").write_text(json.dumps(data))
    return dest


@pytest.mark.parametrize("entry,needle", [
    ({"file": "model.onnx", "engine": "tensorrt", "precision": "fp32"}, "unknown engine 'tensorrt'"),
    ({"file": "model.onnx", "engine": "onnxruntime", "precision": "fp4"}, "unknown precision 'fp4'"),
    ({"file": "../model.onnx", "engine": "onnxruntime", "precision": "fp32"}, "outside the bundle"),
    ({"file": "extra.xml", "engine": "openvino", "precision": "int8"}, "no checksum"),
    ({"engine": "openvino", "precision": "int8"}, "no valid 'file'"),
])
def test_bad_artifact_entries_are_refused(
    tiny_bundle: Callable[..., Path], tmp_path: Path, entry: dict[str, Any], needle: str
) -> None:
    bundle = _with_artifacts(tiny_bundle("bert", "embedding"), tmp_path / "b", [entry])
    with pytest.raises(BundleError, match=needle):
        edgebert.load(bundle, verify=False)


def test_auto_picks_the_first_artifact_whose_engine_is_installed(
    tiny_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = read_manifest(tiny_bundle("bert", "embedding"))
    m = dataclasses.replace(manifest, files={}, artifacts=(
        {"file": "openvino_model.xml", "engine": "openvino", "precision": "int8",
         "files": ["openvino_model.xml", "openvino_model.bin"]},
        {"file": "model.onnx", "engine": "onnxruntime", "precision": "int8"}))
    monkeypatch.setattr(artifacts, "installed_engine", lambda name: True)
    assert artifacts.choose_artifact(m, "auto")[0].file == "openvino_model.xml"
    assert artifacts.choose_artifact(m, "onnxruntime")[0].file == "model.onnx"
    monkeypatch.setattr(artifacts, "installed_engine", lambda name: name == "onnxruntime")
    chosen, engine = artifacts.choose_artifact(m, "auto")
    assert (chosen.file, engine) == ("model.onnx", "onnxruntime")
    with pytest.raises(ConfigError, match="engine='tvm'; choose auto or one of"):
        artifacts.choose_artifact(m, "tvm")
    monkeypatch.setattr(artifacts, "installed_engine", lambda name: True)
    for precision in ("bf16", "mixed"):  # OpenVINO computes these in bf16: auto passes them over without bf16
        needs_bf16 = dataclasses.replace(m, artifacts=({**m.artifacts[0], "precision": precision}, m.artifacts[1]))
        monkeypatch.setattr(artifacts, "cpu_has_bf16", lambda: False)
        assert artifacts.choose_artifact(needs_bf16, "auto")[0].file == "model.onnx"
        monkeypatch.setattr(artifacts, "cpu_has_bf16", lambda: True)
        assert artifacts.choose_artifact(needs_bf16, "auto")[0].file == "openvino_model.xml"
    ort_int8 = dataclasses.replace(manifest, files={}, precision="int8")  # what `edgebert quantize` writes
    assert artifacts.choose_artifact(ort_int8, "onnxruntime")[0].precision == "int8"
    with pytest.raises(ConfigError, match=r"int8 graph .* is built for ONNX Runtime"):
        artifacts.choose_artifact(ort_int8, "openvino")
    assert artifacts.choose_artifact(manifest, "openvino") == (artifacts.artifacts_of(manifest)[0], "openvino")


# ------------------------------------------------------------------------------------------- with OpenVINO
def test_optimize_with_openvino_candidates(tiny_bundle: Callable[..., Path], tmp_path: Path, texts_file: Path) -> None:
    require("openvino")
    require("nncf")
    src, out = tiny_bundle("bert", "embedding"), tmp_path / "ov"
    m = optimize_model(src, out, calibration=texts_file, min_cosine=0.5, **FAST)
    rows = {r["name"]: r for r in (m.autotune or {})["candidates"]}
    assert {"openvino-fp32", "openvino-int8", "openvino-bf16", "openvino-mixed", "onnxruntime-int8"} <= set(rows)
    assert rows["openvino-fp32"]["accuracy"]["cosine_min"] > 0.999  # same fp32 maths on another engine
    assert not rows["openvino-int8"].get("skipped"), rows["openvino-int8"]
    if openvino_has_bf16():  # NNCF's int8 IR with its float operators in bf16: built, scored and timed
        assert "latency_ms" in rows["openvino-mixed"] and rows["openvino-mixed"]["accuracy"]["cosine_min"] > 0.5
        assert rows["openvino-mixed"]["recipe"] == "no-smoothquant"  # the fastest recipe met this loose budget
    else:
        assert "no bf16" in rows["openvino-mixed"]["skipped"]
    chosen = (m.autotune or {})["chosen"]
    assert m.artifacts[0]["engine"] == rows[chosen]["engine"]
    assert m.artifacts[-1]["file"] == "model.onnx"
    for engine in ("auto", "onnxruntime"):
        assert all(r.ok for r in verify_bundle(out, engine=engine)), engine
    if rows[chosen]["engine"] != "openvino":  # the timing chose ONNX Runtime here: no OpenVINO artifact
        assert all(a["engine"] == "onnxruntime" for a in m.artifacts)
        if rows[chosen]["precision"] == "int8":  # its int8 graph is ONNX Runtime's own: refused, with the reason
            with pytest.raises(ConfigError, match=r"built for ONNX Runtime"):
                verify_bundle(out, engine="openvino")
        else:  # an fp32 model.onnx runs on OpenVINO as well
            assert all(r.ok for r in verify_bundle(out, engine="openvino"))
        return
    assert all(r.ok for r in verify_bundle(out, engine="openvino"))
    a = edgebert.load(out, engine="openvino")(["edge models run fast"])[0]
    b = edgebert.load(src)(["edge models run fast"])[0]
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.5


def test_optimize_openvino_only_still_scores_against_onnxruntime_fp32(
    tiny_bundle: Callable[..., Path], tmp_path: Path, texts_file: Path
) -> None:
    require("openvino")
    src, out = tiny_bundle("bert", "embedding"), tmp_path / "ovonly"
    m = optimize_model(src, out, engines=("openvino",), precisions=("fp32",), calibration=texts_file, **FAST)
    rows = (m.autotune or {})["candidates"]
    assert [r["name"] for r in rows] == ["openvino-fp32"] and rows[0]["accuracy"]["cosine_min"] > 0.999
    assert (m.autotune or {})["model_onnx"] == "onnxruntime-fp32" and m.precision == "fp32"
    assert [a["engine"] for a in m.artifacts] == ["openvino", "onnxruntime"]
    assert (out / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()


def test_openvino_mixed_runs_int8_with_bf16_compute() -> None:
    """The one rule for the engine's precision hint, shared by the optimizer's candidates and the loader."""
    assert artifacts.compute_precision("openvino", "mixed") == "bf16"
    assert artifacts.compute_precision("openvino", "bf16") == "bf16"
    assert artifacts.compute_precision("onnxruntime", "mixed") == "fp32"  # fp32 MatMuls in an int8 graph
    assert [artifacts.compute_precision(e, "int8") for e in ("openvino", "onnxruntime")] == ["fp32", "fp32"]
    entry = {"file": "m.xml", "engine": "openvino", "precision": "mixed", "files": ["m.xml", "m.bin"]}
    assert artifacts.parse_artifact(entry, "edgebert.json").engine_precision == "bf16"


def test_bf16_candidates_are_skipped_with_the_reason_on_a_cpu_without_bf16(
    tiny_bundle: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cpu_without_bf16(monkeypatch)
    plan = Plan(tiny_bundle("bert", "embedding"), tmp_path, None, None, [{"input_ids": np.ones((1, 4), np.int64)}],
                {"min_cosine": 0.9})
    cands = build_candidates(plan, ("openvino",), ("bf16", "mixed"), lambda _: None)
    assert [c.name for c in cands] == ["openvino-bf16", "openvino-mixed"]
    for cand in cands:
        assert cand.path is None and cand.skipped is not None and "no bf16 support" in cand.skipped
    assert not (tmp_path / "openvino-mixed").exists()  # refused before NNCF built anything


def test_openvino_mixed_takes_the_fastest_recipe_that_meets_the_budget(
    tiny_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """Budget-driven like onnxruntime-mixed: without SmoothQuant first, then with it, then with the first FFN
    down-projection left in bf16; the last (most accurate) recipe when nothing meets the budget or when no
    budget check is given."""
    ov = require("openvino")
    require("nncf")
    if not openvino_has_bf16():
        pytest.skip("openvino-mixed needs bf16 (checked by test_bf16_candidates_are_skipped_with_the_reason...)")
    import onnx

    bundle = tiny_bundle("bert", "embedding")
    names = [i.name for i in onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph.input]
    ids = np.random.default_rng(0).integers(5, 200, (4, 12))
    feeds = [{n: (ids if n == "input_ids" else np.ones_like(ids) if n == "attention_mask" else np.zeros_like(ids))
              for n in names}] * 4

    def build(verdicts: list[bool] | None, work: Path) -> tuple[Candidate, list[dict[str, int]]]:
        asked: list[dict[str, int]] = []  # the ops of each graph the builder asked about

        def accepts(cand: Candidate) -> bool:
            assert cand.path is not None and verdicts is not None
            asked.append(_ops(ov, cand.path))
            return verdicts[len(asked) - 1]

        plan = Plan(bundle, work, None, None, feeds, {"min_cosine": 0.9}, None if verdicts is None else accepts)
        (cand,) = build_candidates(plan, ("openvino",), ("mixed",), lambda _: None)
        return cand, asked

    fastest, asked = build([True], tmp_path / "first")
    assert fastest.detail == {"recipe": "no-smoothquant", "smooth_quant": False, "bf16_matmuls_for_accuracy": []}
    assert len(asked) == 1 and asked[0]["smooth_quant_multiplies"] == 0
    second, asked = build([False, True], tmp_path / "second")
    assert second.detail == {"recipe": "all-int8", "smooth_quant": True, "bf16_matmuls_for_accuracy": []}
    assert asked[1]["smooth_quant_multiplies"] > 0 and asked[1]["FakeQuantize"] == asked[0]["FakeQuantize"]
    last, asked = build([False, False], tmp_path / "last")
    assert last.detail["recipe"] == "layer0-bf16" and len(last.detail["bf16_matmuls_for_accuracy"]) == 1
    assert len(asked) == 2 and _ops(ov, last.path)["FakeQuantize"] < asked[1]["FakeQuantize"]  # one GEMM less
    unchecked, never = build(None, tmp_path / "unchecked")
    assert unchecked.detail == last.detail and never == []


def _ops(ov: Any, path: Path | None) -> dict[str, int]:
    ops = ov.Core().read_model(str(path)).get_ops()
    return {"FakeQuantize": sum(op.get_type_name() == "FakeQuantize" for op in ops),
            "smooth_quant_multiplies": sum(op.get_type_name() == "Multiply" and "smooth_quant" in op.get_friendly_name()
                                           for op in ops)}
