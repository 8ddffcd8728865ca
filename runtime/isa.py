"""CPU instruction-set detection for int8 kernels, and the load-time warning for mismatched bundles.

int8 GEMM speed and exactness depend on the ISA: AVX512-VNNI and AVX-VNNI multiply u8 x s8 with
32-bit accumulation; AVX2 without VNNI uses ``vpmaddubsw``, whose 16-bit intermediate sums saturate
unless weights are quantized to 7 bits (``reduce_range``); ARM uses ``sdot``/``udot`` when the CPU
has the dot-product extension. The quantizer records the ISA it tuned for; the runtime warns when a
bundle runs on a CPU of another kind.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebert.errors import IsaMismatchWarning

ISAS = ("avx512_vnni", "avx_vnni", "avx2", "x86_64", "arm64_dotprod", "arm64", "unknown")
# ISAs whose int8 GEMM accumulates u8 x s8 pairs without saturation (no reduce_range needed).
SATURATION_FREE = frozenset({"avx512_vnni", "avx_vnni", "arm64_dotprod", "arm64"})


def _cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None) -> str | None:
    """The ``/proc/cpuinfo`` value of the first of ``names`` (lower case) it has; None if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return next((fields[n] for n in names if n in fields), None)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (x86 "flags", ARM "Features"); empty if unknown."""
    return set((_cpuinfo_field(("flags", "features"), cpuinfo) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (x86 "model name", ARM "Model"), else the platform's."""
    name = _cpuinfo_field(("model name", "model"), cpuinfo)  # in that order: x86 has a numeric "model" too
    return name or platform.processor() or platform.machine()


def detect_isa(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """The best int8 instruction set of this CPU: one of :data:`ISAS`.

    ``cpuinfo`` and ``machine`` (``platform.machine()``) may be given for testing.
    """
    arch = (machine if machine is not None else platform.machine()).lower()
    flags = cpu_flags(cpuinfo)
    if arch in ("aarch64", "arm64") or "asimd" in flags:
        return "arm64_dotprod" if "asimddp" in flags else "arm64"
    if arch in ("x86_64", "amd64", "i686", "x86") or "sse2" in flags:
        if "avx512_vnni" in flags or "avx512vnni" in flags:
            return "avx512_vnni"
        if "avx_vnni" in flags or "avxvnni" in flags:
            return "avx_vnni"
        if "avx2" in flags:
            return "avx2"
        return "x86_64"
    return "unknown"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has bf16 arithmetic (x86 AVX512-BF16 or AMX-BF16, ARM BF16); None if unknown."""
    flags = cpu_flags(cpuinfo)
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def needs_reduce_range(isa: str) -> bool:
    """True on x86 without VNNI, where u8 x s8 pair sums saturate 16 bits with full-range weights."""
    return isa not in SATURATION_FREE and isa != "unknown"


def isa_mismatch(manifest: Any, here: str | None = None) -> str | None:
    """A message if ``manifest`` is an int8 bundle tuned for another ISA than ``here``; else None."""
    record = getattr(manifest, "quantization", None)
    if not isinstance(record, Mapping):
        return None
    tuned = record.get("isa")
    if not tuned or tuned == "unknown":
        return None
    here = here or detect_isa()
    if here == tuned or here == "unknown":
        return None
    reduce_range = bool(record.get("reduce_range", False))
    if needs_reduce_range(here) and not reduce_range:
        risk = (
            "this CPU has no VNNI: int8 products may saturate with full-range weights, so results "
            "can be less accurate than the bundle's accuracy report"
        )
    elif here in ("avx512_vnni", "avx_vnni", "arm64_dotprod") and reduce_range:
        risk = "the bundle uses 7-bit weights (reduce_range) that this CPU does not need: it loses a little accuracy"
    else:
        risk = "speed and accuracy may differ from what the bundle's report says"
    return (
        f"this int8 bundle was tuned for {tuned} but runs on {here}: {risk}. "
        f"Re-quantize it here with `edgebert quantize` (preset 'auto') for the best result."
    )


def warn_if_isa_mismatch(manifest: Any, here: str | None = None) -> None:
    """Warn (:class:`IsaMismatchWarning`) when an int8 bundle was tuned for another ISA than this CPU's."""
    message = isa_mismatch(manifest, here)
    if message:
        warnings.warn(message, IsaMismatchWarning, stacklevel=3)
