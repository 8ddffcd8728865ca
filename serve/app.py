"""The Starlette app: routes, the shared request plumbing (body limit, JSON, errors, metrics), lifespan.

``create_app(bundles, config)`` returns an ASGI app; run it with uvicorn (``edgebert serve`` does). The
models load on a background thread at start-up; ``GET /health`` answers 503 until every one is loaded
and warmed, then 200. On shutdown (SIGTERM under uvicorn) requests in flight finish first, then the
workers drain their queues and stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edgebert.errors import ConfigError, EdgebertError

from . import endpoints
from .config import ServeConfig
from .errors import SERVER, ApiError, from_edgebert
from .metrics import Metrics
from .models import ModelSet, name_bundles

log = logging.getLogger("edgebert.serve")
Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    bundles: dict[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
    config: ServeConfig | None = None,
) -> Starlette:
    """An ASGI app serving ``bundles`` (model name -> path, or paths named by folder / ``NAME=PATH``).

    Every manifest is read now (a bad path raises :class:`~edgebert.errors.BundleError` here); the
    models themselves load when the app starts (its lifespan), on a background thread.
    """
    config = config or ServeConfig()
    if not isinstance(config, ServeConfig):
        raise ConfigError(f"config={config!r}; give edgebert.serve.ServeConfig(...).")
    metrics = Metrics()
    models = ModelSet(name_bundles(bundles), config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        models.start_loading()
        yield
        models.close()

    def wrap(endpoint: str, handler: Callable[[Request, ModelSet], Awaitable[Response]]) -> Handler:
        return instrumented(endpoint, handler, models, metrics)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/health", wrap("/health", health), methods=["GET"]),
        Route("/metrics", lambda request: metrics_response(metrics), methods=["GET"]),
        Route("/v1/models", wrap("/v1/models", endpoints.list_models), methods=["GET"]),
        Route("/v1/models/{model:path}", wrap("/v1/models", endpoints.get_model), methods=["GET"]),
        Route("/v1/embeddings", wrap("/v1/embeddings", endpoints.embeddings), methods=["POST"]),
        Route("/rerank", wrap("/rerank", endpoints.rerank), methods=["POST"]),
        Route("/v1/rerank", wrap("/rerank", endpoints.rerank), methods=["POST"]),
        Route("/predict", wrap("/predict", endpoints.predict), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.models = models
    app.state.metrics = metrics
    app.state.config = config
    return app


def instrumented(endpoint: str, handler: Callable[[Request, ModelSet], Awaitable[Response]], models: ModelSet,
                 metrics: Metrics) -> Handler:
    """Run a handler: errors become OpenAI-shaped JSON, every request is counted and timed."""

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        request.state.model = ""
        try:
            response = await handler(request, models)
        except ApiError as e:
            response = e.response()
        except EdgebertError as e:
            response = from_edgebert(e).response()
        except Exception:
            log.exception("unexpected error in %s", endpoint)
            response = ApiError(500, "internal server error; the server's log has the details.", type=SERVER,
                                code="internal_error").response()
        model = str(request.state.model)
        metrics.requests.labels(model, endpoint, str(response.status_code)).inc()
        metrics.latency.labels(model, endpoint).observe(time.perf_counter() - start)
        return response

    return run


async def health(request: Request, models: ModelSet) -> Response:
    loaded = [m.name for m in models.models.values() if m.pipe is not None]
    if models.ready.is_set():
        return JSONResponse({"status": "ok", "models": loaded})
    status = "error" if models.error else "loading"
    body = {"status": status, "models": loaded, **({"error": models.error} if models.error else {})}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def metrics_response(metrics: Metrics) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)


async def page(request: Request) -> Response:
    html = resources.files("edgebert.serve").joinpath("page.html").read_text(encoding="utf-8")
    return HTMLResponse(html)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods in the same error shape as everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
    message = f"{request.method} {request.url.path}: {detail}"
    if status == 404:
        message += "; the endpoints are /v1/embeddings, /v1/models, /rerank, /predict, /health, /metrics and /."
    headers = getattr(exc, "headers", None) or {}
    return ApiError(status, message, code="not_found" if status == 404 else None, headers=dict(headers)).response()
