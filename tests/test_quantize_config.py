"""Quantization recipe settings: CPU instruction-set detection, the ISA-mismatch warning, the config's presets
and validation (no model needed)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgebert.errors import ConfigError, EdgebertWarning, IsaMismatchWarning
from edgebert.quantize import QuantizationConfig
from edgebert.runtime.isa import cpu_has_bf16, detect_isa, isa_mismatch, needs_reduce_range, warn_if_isa_mismatch

# ---------------------------------------------------------------------------------------------- ISA
CPU_X86 = "processor : 0\nflags\t\t: fpu sse2 avx avx2 {extra}\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "expected"),
    [
        (CPU_X86.format(extra="avx512f avx512_vnni avx_vnni"), "x86_64", "avx512_vnni"),
        (CPU_X86.format(extra="avx_vnni"), "x86_64", "avx_vnni"),
        (CPU_X86.format(extra=""), "x86_64", "avx2"),
        ("flags : fpu sse2\n", "x86_64", "x86_64"),
        ("Features\t: fp asimd evtstrm aes asimddp sve\n", "aarch64", "arm64_dotprod"),
        ("Features\t: fp asimd evtstrm\n", "aarch64", "arm64"),
        ("", "riscv64", "unknown"),
    ],
)
def test_detect_isa(cpuinfo: str, machine: str, expected: str) -> None:
    assert detect_isa(cpuinfo, machine) == expected


@pytest.mark.parametrize(("cpuinfo", "expected"), [
    (CPU_X86.format(extra="avx512f avx512_vnni avx512_bf16"), True),
    (CPU_X86.format(extra="amx_bf16 amx_tile"), True),
    (CPU_X86.format(extra="avx512f avx512_vnni"), False),
    ("Features\t: fp asimd asimddp bf16 i8mm\n", True),
    ("", None),  # unknown: the caller decides
])
def test_cpu_has_bf16(cpuinfo: str, expected: bool | None) -> None:
    assert cpu_has_bf16(cpuinfo) is expected


def _expected_isa_here() -> str:
    """This machine's int8 ISA, read straight from /proc/cpuinfo's flag line."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    line = next((ln for ln in cpuinfo.read_text().splitlines()
                 if ln.split(":")[0].strip().lower() in ("flags", "features")), ":")
    flags = set(line.split(":", 1)[1].split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64_dotprod" if "asimddp" in flags else "arm64"
    ranked = [("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"), ("avx2", "avx2")]
    return next((isa for flag, isa in ranked if flag in flags), "x86_64")


def test_detect_isa_reads_this_cpu() -> None:
    here = _expected_isa_here()
    assert detect_isa() == here
    auto = QuantizationConfig.auto()
    assert auto.isa == ("avx2" if here == "x86_64" else here)  # plain x86_64 gets the AVX2 (7-bit) preset
    assert auto.resolved_reduce_range() is needs_reduce_range(auto.isa)


def test_isa_mismatch_warning() -> None:
    vnni_bundle = SimpleNamespace(quantization={"isa": "avx512_vnni", "reduce_range": False})
    with pytest.warns(IsaMismatchWarning, match="saturate"):
        warn_if_isa_mismatch(vnni_bundle, here="avx2")
    avx2_bundle = SimpleNamespace(quantization={"isa": "avx2", "reduce_range": True})
    assert "7-bit" in (isa_mismatch(avx2_bundle, here="avx512_vnni") or "")
    with pytest.warns(EdgebertWarning):  # one filter silences every edgebert warning
        warn_if_isa_mismatch(vnni_bundle, here="arm64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_isa_mismatch(vnni_bundle, here="avx512_vnni")
        warn_if_isa_mismatch(SimpleNamespace(quantization=None), here="avx2")


# ------------------------------------------------------------------------------------------- config
def test_config_presets_and_validation() -> None:
    assert QuantizationConfig.avx2().resolved_reduce_range() is True
    assert QuantizationConfig.avx512_vnni().resolved_reduce_range() is False
    assert QuantizationConfig.arm64().isa == "arm64_dotprod"
    # all int8 by default (real-token calibration); the 7-bit AVX2 preset keeps layer 0's down-projection fp32
    presets = (QuantizationConfig.avx512_vnni, QuantizationConfig.avx_vnni, QuantizationConfig.arm64,
               QuantizationConfig.avx2)
    assert [preset().fp32_down_projections for preset in presets] == [0, 0, 0, 1]
    assert QuantizationConfig.avx2(fp32_down_projections=0).fp32_down_projections == 0
    with pytest.raises(ConfigError, match="method='fp16'; choose one of auto, dynamic, static"):
        QuantizationConfig(method="fp16")
    with pytest.raises(ConfigError, match="calibrator"):
        QuantizationConfig(calibrator="kl")
    with pytest.raises(ConfigError, match=r"min_cosine=2.0; give a value in \[-1, 1\]"):
        QuantizationConfig(min_cosine=2.0)
    with pytest.raises(ConfigError, match="percentile='high'; give a number"):
        QuantizationConfig(percentile="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exclude_nodes='MatMul_1'; give a tuple"):
        QuantizationConfig(exclude_nodes="MatMul_1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="eval_size=True"):
        QuantizationConfig(eval_size=True)
    with pytest.raises(AttributeError):
        QuantizationConfig().method = "static"  # type: ignore[misc]


def test_cli_down_projections_flag_overrides_the_preset_only_when_given() -> None:
    from edgebert.quantize.cli import add_quantize_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_quantize_arguments(parser)
    args = ["bundle", "out", "--preset"]
    assert config_from_args(parser.parse_args([*args, "avx2"])).fp32_down_projections == 1
    assert config_from_args(parser.parse_args([*args, "avx512_vnni"])).fp32_down_projections == 0
    given = parser.parse_args([*args, "avx2", "--fp32-down-projections", "0"])
    assert config_from_args(given).fp32_down_projections == 0
