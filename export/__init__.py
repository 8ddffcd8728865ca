"""edgebert.export: Hugging Face BERT-family folders -> verified, fused ONNX bundles (needs torch)."""

from __future__ import annotations

from .api import ExportConfig, export_model
from .specs import ARCHITECTURES, TASK_HEADS, ArchSpec

__all__ = ["ARCHITECTURES", "TASK_HEADS", "ArchSpec", "ExportConfig", "export_model"]
