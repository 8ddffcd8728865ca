"""The exporter's stages on their seams: task facts from the registry, option checks (ConfigError), probes
that leave the shared tokenizer alone, one engine per candidate graph, and optimize="auto"'s timing rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebert.errors import ConfigError, UnsupportedModelError
from edgebert.export import ARCHITECTURES, ArchSpec, ExportConfig, export_model
from edgebert.runtime.tasks import TASK_NAMES

# --- specs and options -------------------------------------------------------------------------------


def test_arch_tasks_default_to_the_registry() -> None:
    assert ArchSpec("X").tasks == TASK_NAMES
    assert all(set(spec.tasks) <= set(TASK_NAMES) for spec in ARCHITECTURES.values())


def test_check_task_lists_what_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebert.export.specs import check_task

    with pytest.raises(UnsupportedModelError, match=r"unknown task 'ner'; choose one of: auto, embedding, "):
        check_task("bert", "ner")
    monkeypatch.setitem(ARCHITECTURES, "bert", ArchSpec("BERT", tasks=("fill-mask", "embedding")))
    with pytest.raises(UnsupportedModelError, match=r"BERT does not support task 'token-classification'.*fill-mask"):
        check_task("bert", "token-classification")
    check_task("bert", "fill-mask")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timing_rounds": 0}, "timing_rounds=0"),
        ({"max_length": "64"}, "whole number of tokens"),
        ({"max_length": 4}, "too small"),
        ({"atol": True}, "positive tolerance"),
        ({"optimise": "fused"}, r"unknown export option\(s\) \['optimise'\]; known: .*'optimize'"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        export_model(tmp_path / "no-model", tmp_path / "out", **options)  # checked before the folder is read
    with pytest.raises(ConfigError, match="must be an ExportConfig"):
        export_model(tmp_path / "no-model", tmp_path / "out", {"task": "auto"})  # type: ignore[arg-type]
    assert ExportConfig().optimize == "auto"


# --- probes and engines -----------------------------------------------------------------------------


class _NoToggle:
    """A tokenizer that refuses to have truncation switched on or off (the shared one must stay as is)."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def __getattr__(self, name: str) -> Any:
        if name in ("enable_truncation", "no_truncation"):
            raise AssertionError(f"{name} called on the shared tokenizer")
        return getattr(self._tok, name)


def test_probes_leave_the_shared_tokenizer_alone(tiny_model: Callable[..., Path]) -> None:
    from edgebert.export import parity
    from edgebert.runtime.manifest import Manifest
    from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

    tok = load_tokenizer(tiny_model("bert", "feature-extraction") / "tokenizer.json")
    manifest = Manifest("feature-extraction", "bert", ("input_ids", "attention_mask"), ("last_hidden_state",), 16)
    encoder = TextEncoder(_NoToggle(tok), manifest)  # type: ignore[arg-type]
    probes = parity.make_probes(encoder, 16)
    assert probes.long_length == 16 and probes.long_feeds["input_ids"].shape == (1, 16)
    assert max(probes.lengths) == 16 and len(probes.lengths) == len(parity.PROBE_TEXTS)
    assert probes.batch_feeds["input_ids"].shape == (len(parity.PROBE_TEXTS), 16)
    assert tok.truncation is None


def test_one_engine_per_candidate_graph(
    tiny_model: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parity, optimize="auto"'s timing and the golden probes share one engine per graph: two in all."""
    import onnxruntime as ort

    import edgebert.export.stages as stages

    real_session, real_open = ort.InferenceSession, stages.open_engine
    sessions: list[str] = []
    opened: list[tuple[str, Any]] = []

    def session(path: Any, *args: Any, **kwargs: Any) -> Any:
        sessions.append(str(path))
        return real_session(path, *args, **kwargs)

    def open_engine(path: Any, **kwargs: Any) -> Any:
        opened.append((Path(path).parent.name, kwargs.get("threads")))
        return real_open(path, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(stages, "open_engine", open_engine)
    manifest = export_model(tiny_model("bert", "token-classification"), tmp_path / "out", quiet=True, timing_rounds=5)
    assert "latency_ms_1thread" in manifest.optimization  # both graphs were timed
    assert opened == [("plain", 1), ("fused", 1)]
    assert len(sessions) == 2


# --- optimize="auto" ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "expected"), [(0.7, "fused"), (0.96, "none"), (1.0, "none"), (1.3, "none")])
def test_auto_choice_rule(monkeypatch: pytest.MonkeyPatch, ratio: float, expected: str) -> None:
    """optimize="auto" keeps the fused graph only when it is clearly (> 5%) faster over the timing shapes."""
    from edgebert.export import choose

    engines = {"none": object(), "fused": object()}

    def fake_time(timed: Mapping[str, Any], feeds: dict[str, np.ndarray], rounds: int) -> dict[str, float]:
        assert rounds == 5 and timed == engines
        return {"none": 10.0, "fused": 10.0 * ratio}

    monkeypatch.setattr(choose, "time_engines", fake_time)
    feeds = {"input_ids": np.arange(64, dtype=np.int64)[None], "attention_mask": np.ones((1, 64), dtype=np.int64)}
    messages: list[str] = []
    chosen, record = choose.choose(engines, feeds, 5, messages.append)  # type: ignore[arg-type]
    assert chosen == expected
    assert set(record["latency_ms_1thread"]) == {"1x8", "1x64", "32x16"}  # 1x128 clipped to max length 64
    assert record["fused_over_plain_geomean"] == pytest.approx(ratio, abs=1e-3)
    assert f"keep {expected}" in messages[-1]


class _Counting:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Any = None) -> dict[str, np.ndarray]:
        self.log.append(self.name)
        return {}


@pytest.mark.parametrize(("rounds", "timed"), [(3, 5), (8, 8)])
def test_time_engines_interleaves(rounds: int, timed: int) -> None:
    """One warm-up call each, then at least MIN_ROUNDS (5) rounds, alternating who goes first."""
    from edgebert.export.choose import MIN_ROUNDS, time_engines

    log: list[str] = []
    medians = time_engines({"none": _Counting("none", log), "fused": _Counting("fused", log)}, {}, rounds)  # type: ignore[dict-item]
    assert MIN_ROUNDS == 5 and set(medians) == {"none", "fused"}
    assert log[:2] == ["none", "fused"]  # the warm-up
    assert len(log) == 2 * (1 + timed)
    assert log[2:6] == ["none", "fused", "fused", "none"]


def test_timing_feeds_end_with_the_final_special_token() -> None:
    from edgebert.export.choose import shape_feeds

    long = {"input_ids": np.arange(100, 164, dtype=np.int64)[None], "attention_mask": np.ones((1, 64), np.int64)}
    feeds = shape_feeds(long, 32, 16)
    assert feeds["input_ids"].shape == (32, 16) and feeds["attention_mask"].shape == (32, 16)
    assert list(feeds["input_ids"][3, :3]) == [100, 101, 102] and feeds["input_ids"][3, -1] == 163
    assert long["input_ids"][0, 15] == 115  # the source is not modified
