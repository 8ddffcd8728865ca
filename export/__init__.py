"""edgebert.export: Hugging Face BERT-family folders -> verified, fused ONNX bundles (needs torch).

Per-task facts (model head, outputs, ``--task auto``) come from the task registry, re-exported here as
``TASKS``; ``ARCHITECTURES`` says which model types export and how.
"""

from __future__ import annotations

from edgebert.runtime.tasks import TASK_NAMES, TASKS

from .api import export_model
from .config import ExportConfig
from .specs import ARCHITECTURES, ArchSpec

__all__ = ["ARCHITECTURES", "TASKS", "TASK_NAMES", "ArchSpec", "ExportConfig", "export_model"]
