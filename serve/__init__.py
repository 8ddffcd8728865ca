"""edgebert.serve: an HTTP service over bundles (``pip install "edgebert[serve]"``; starlette + uvicorn).

>>> from edgebert.serve import ServeConfig, create_app
>>> app = create_app(["bundles/minilm-int8", "sentiment=bundles/clf"], ServeConfig(max_wait_ms=2))

``edgebert serve BUNDLE...`` runs the same app under uvicorn. Endpoints: ``POST /v1/embeddings`` and
``GET /v1/models`` (OpenAI-compatible), ``POST /rerank`` (TEI and Cohere request shapes), ``POST /predict``
(every task), ``GET /health``, ``GET /metrics`` (Prometheus) and a page to try the models at ``/``.
"""

from __future__ import annotations

from .app import create_app
from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
