"""``QuantizationConfig``: the recipe, as a frozen dataclass with named presets per CPU instruction set."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Literal

from edgebert.errors import ConfigError
from edgebert.runtime.isa import ISAS, detect_isa, needs_reduce_range

Method = Literal["auto", "dynamic", "static"]
Format = Literal["qdq", "qoperator"]
Calibrator = Literal["minmax", "entropy", "percentile"]

METHODS = ("auto", "dynamic", "static")
FORMATS = ("qdq", "qoperator")
CALIBRATORS = ("minmax", "entropy", "percentile")

# field -> (what it must be, the accepted types, whether None is allowed); bool is never a number here
_KINDS: dict[str, tuple[str, tuple[type, ...], bool]] = {
    **{n: ("a string", (str,), False) for n in ("method", "format", "calibrator", "isa")},
    **{n: ("True or False", (bool,), False)
       for n in ("per_channel", "quantize_attention", "quantize_embeddings", "fuse_bias", "quiet")},
    "reduce_range": ("True, False or None", (bool,), True),
    "percentile": ("a number", (numbers.Real,), False),
    **{n: ("a number or None", (numbers.Real,), True)
       for n in ("smooth_alpha", "smooth_cap", "max_accuracy_drop", "min_cosine")},
    **{n: ("an integer", (numbers.Integral,), False) for n in ("calibration_size", "eval_size", "max_length", "seed")},
    "max_fp32_matmuls": ("an integer or None", (numbers.Integral,), True),
    "fp32_down_projections": ("an integer", (numbers.Integral,), False),
    **{n: ("a tuple of names", (tuple, list), False) for n in ("exclude_nodes", "exclude_op_types")},
}


@dataclass(frozen=True)
class QuantizationConfig:
    """How to quantize a bundle to int8 (see :func:`edgebert.quantize.quantize_model`).

    Attributes:
        method: "static" (activation scales calibrated on real text: results independent of
            batch-mates and padding), "dynamic" (activation scales computed per call over the whole
            batch) or "auto" (static; calibrated on edgebert's packaged general-domain texts when
            none are given; the guarded mode also tries dynamic).
        format: "qdq" (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses) or "qoperator"
            (QLinearMatMul / MatMulInteger nodes). Measured in ``quantize/MEASUREMENTS.md``
            (``scripts/research/measure_quantize.py``).
        per_channel: one weight scale per output channel (else one per tensor).
        calibrator: static only: how activation ranges are chosen from calibration data.
        percentile: the percentile of |x| kept by the "percentile" calibrator.
        smooth_alpha: static only: SmoothQuant-style activation equalization strength (0..1), or None.
        smooth_cap: static only: after equalization no input channel's range may exceed this many
            times the median channel's (outlier channels are divided further), or None.
        reduce_range: 7-bit weights; None picks it from the ISA (True on x86 without VNNI).
        isa: the CPU the recipe is tuned for ("auto" detects this machine's).
        exclude_nodes / exclude_op_types: nodes kept in fp32 (by node name or op type).
        quantize_embeddings: store large embedding tables (Gather) as int8 with per-row scales
            (weight-only: 4x smaller file, no measurable accuracy or speed change on MiniLM).
        fuse_bias: static QDQ: rewrite each quantized MatMul and its bias Add as one
            ``MatMulIntegerToFloat`` (ONNX Runtime's own QDQ fusion keeps the Add apart; measured
            faster, identical results).
        quantize_attention: also quantize the activation x activation MatMuls (attention scores
            and context); off by default: they carry no weights and are accuracy-sensitive.
        fp32_down_projections: keep the first k FFN down-projection MatMuls (input wider than output)
            in fp32. Default 0: with activation ranges taken from real tokens only
            (:mod:`edgebert.quantize.calibrate`) all-int8 MiniLM reaches cosine 0.9981 / 0.9906 to fp32
            (mean / min, 1,000 unseen movie-review sentences, Zen 5, 2026-12-01) where layer 0's down-projection
            in fp32 had been needed while padding positions set the ranges. The avx2 preset keeps 1: its
            7-bit weights were measured with that MatMul in fp32 (``quantize/AVX2_RECIPES.md``) and not since.
        calibration_size: at most this many calibration texts are used.
        eval_size: at most this many held-out texts are used for the accuracy report.
        max_length: token limit for calibration and evaluation texts.
        max_accuracy_drop: accuracy-guarded mode: largest allowed drop in points (classifiers:
            accuracy on labelled data, else agreement with fp32; other tasks: agreement).
        min_cosine: accuracy-guarded mode for embeddings: required mean cosine to fp32 (the minimum
            over texts must reach ``min_cosine - 0.015``).
        max_fp32_matmuls: guarded mode keeps at most this many weight MatMuls in fp32 (None: half).
        seed: seeds the order of calibration texts.
        quiet: no progress on stderr.
    """

    method: Method = "auto"
    format: Format = "qdq"
    per_channel: bool = True
    calibrator: Calibrator = "percentile"
    percentile: float = 99.999
    smooth_alpha: float | None = 0.5
    smooth_cap: float | None = 1.5
    reduce_range: bool | None = None
    isa: str = "auto"
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    quantize_attention: bool = False
    fp32_down_projections: int = 0
    quantize_embeddings: bool = True
    fuse_bias: bool = True
    calibration_size: int = 256
    eval_size: int = 1000
    max_length: int = 128
    max_accuracy_drop: float | None = None
    min_cosine: float | None = None
    max_fp32_matmuls: int | None = None
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        checks = (("method", METHODS), ("format", FORMATS), ("calibrator", CALIBRATORS))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; choose one of {', '.join(allowed)}.")
        if self.isa != "auto" and self.isa not in ISAS:
            raise ConfigError(f"isa={self.isa!r}; choose auto or one of {', '.join(ISAS)}.")
        if self.smooth_alpha is not None and not 0.0 <= self.smooth_alpha <= 1.0:
            raise ConfigError(f"smooth_alpha={self.smooth_alpha}; give a value in [0, 1] or None.")
        if self.smooth_cap is not None and self.smooth_cap < 1.0:
            raise ConfigError(f"smooth_cap={self.smooth_cap}; give a value >= 1 or None.")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile={self.percentile}; give a value in (50, 100].")
        for name in ("calibration_size", "eval_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}; give a positive integer.")
        if self.fp32_down_projections < 0:
            raise ConfigError(f"fp32_down_projections={self.fp32_down_projections}; give an integer >= 0.")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ConfigError(f"max_accuracy_drop={self.max_accuracy_drop}; give points >= 0.")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"min_cosine={self.min_cosine}; give a value in [-1, 1].")
        object.__setattr__(self, "exclude_nodes", tuple(self.exclude_nodes))
        object.__setattr__(self, "exclude_op_types", tuple(self.exclude_op_types))

    # ------------------------------------------------------------------ presets
    @classmethod
    def avx512_vnni(cls, **overrides: Any) -> QuantizationConfig:
        """AVX512-VNNI x86 (Ice Lake+, Zen 4+): full 8-bit weights, per-channel."""
        return cls(**{"isa": "avx512_vnni", "reduce_range": False, **overrides})

    @classmethod
    def avx_vnni(cls, **overrides: Any) -> QuantizationConfig:
        """AVX-VNNI x86 (Alder Lake+): as AVX512-VNNI."""
        return cls(**{"isa": "avx_vnni", "reduce_range": False, **overrides})

    @classmethod
    def avx2(cls, **overrides: Any) -> QuantizationConfig:
        """AVX2 without VNNI: 7-bit weights (reduce_range) so that u8 x s8 pair sums do not saturate; layer 0's
        FFN down-projection in fp32 (measured so on AVX2)."""
        return cls(**{"isa": "avx2", "reduce_range": True, "fp32_down_projections": 1, **overrides})

    @classmethod
    def arm64(cls, **overrides: Any) -> QuantizationConfig:
        """ARM64 with the dot-product extension (sdot/udot): full 8-bit weights."""
        return cls(**{"isa": "arm64_dotprod", "reduce_range": False, **overrides})

    @classmethod
    def auto(cls, **overrides: Any) -> QuantizationConfig:
        """The preset of the CPU this runs on (detected from /proc/cpuinfo)."""
        isa = detect_isa()
        presets = {"avx512_vnni": cls.avx512_vnni, "avx_vnni": cls.avx_vnni, "avx2": cls.avx2, "x86_64": cls.avx2,
                   "arm64_dotprod": cls.arm64}
        return presets.get(isa, cls)(**overrides) if isa in presets else cls(**{"isa": isa, **overrides})

    # ------------------------------------------------------------------ resolved values
    def resolved_isa(self) -> str:
        return detect_isa() if self.isa == "auto" else self.isa

    def resolved_reduce_range(self) -> bool:
        return needs_reduce_range(self.resolved_isa()) if self.reduce_range is None else bool(self.reduce_range)

    @property
    def guarded(self) -> bool:
        return self.max_accuracy_drop is not None or self.min_cosine is not None

    def replace(self, **changes: Any) -> QuantizationConfig:
        return dataclasses.replace(self, **changes)


def _check_types(cfg: QuantizationConfig) -> None:
    """A wrong type (``percentile="high"``, ``exclude_nodes="MatMul_1"``) is a :class:`ConfigError`, not a
    TypeError from deep inside the quantizer."""
    for name, (what, types, optional) in _KINDS.items():
        value = getattr(cfg, name)
        if value is None and optional:
            continue
        numeric = bool not in types and isinstance(value, bool)
        if numeric or not isinstance(value, types):
            raise ConfigError(f"{name}={value!r}; give {what}.")
        if isinstance(value, (tuple, list)) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}={value!r}; give {what} (strings).")
