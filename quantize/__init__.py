"""edgebert.quantize: int8 bundles with accuracy evidence.

    >>> from edgebert.quantize import QuantizationConfig, quantize_model
    >>> quantize_model("bundles/minilm", "bundles/minilm-int8", calibration="texts.txt")

Imports onnx and onnxruntime.quantization; the runtime never imports this package.
"""

from __future__ import annotations

from edgebert.runtime.isa import detect_isa

from .api import quantize_model
from .config import QuantizationConfig

__all__ = ["QuantizationConfig", "detect_isa", "quantize_model"]
