"""The endpoints: OpenAI ``/v1/embeddings`` and ``/v1/models``, ``/rerank`` (TEI and Cohere shapes), ``/predict``.

Rerank takes two request shapes and answers in the shape it was asked in:

* TEI: ``{"query", "texts", "return_text"?, "raw_scores"?, "top_n"?}`` -> ``[{"index", "score", "text"?}, ...]``
* Cohere: ``{"query", "documents", "top_n"?, "return_documents"?}`` ->
  ``{"model", "results": [{"index", "relevance_score", "document"?: {"text"}}], "usage"}``

Both are sorted by score, best first, and cut to ``top_n``; ``index`` points into the given list. Scores are
the model's (``pipe.predict``: its trained activation, e.g. sigmoid); ``raw_scores: true`` gives the logits.
``/predict`` takes ``{"model", "inputs", "parameters"?}`` (parameters are the pipeline's call options,
e.g. ``top_k``) and returns the runtime's output for the task under ``"outputs"``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebert.errors import InputError
from edgebert.runtime.tasks import get_task

from .errors import ApiError, bad, from_edgebert, type_name
from .inputs import check_count, documents, embedding_input, flag, optional_int, parser_for
from .models import ModelSet, ServedModel


async def read_json(request: Request, models: ModelSet) -> dict[str, Any]:
    """The body as a JSON object; bodies over ``max_body_bytes`` are refused before being read whole."""
    limit = models.config.max_body_bytes
    too_big = ApiError(413, f"the request body is larger than this server's limit of {limit} bytes.",
                       code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e}).", code="invalid_json") from e
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type_name(body)}.", code="invalid_json")
    return body


async def list_models(request: Request, models: ModelSet) -> Response:
    return JSONResponse({"object": "list", "data": [m.card() for m in models.models.values()]})


async def get_model(request: Request, models: ModelSet) -> Response:
    name = request.path_params["model"]
    if name not in models.models:
        raise ApiError(404, f"the model {name!r} does not exist; loaded models: {', '.join(models.models)}.",
                       code="model_not_found", param="model")
    return JSONResponse(models.models[name].card())


async def embeddings(request: Request, models: ModelSet) -> Response:
    body = await read_json(request, models)
    model = models.get(body.get("model"), "/v1/embeddings", ("embedding",))
    request.state.model = model.name
    texts, _ = embedding_input(body.get("input"))
    check_count(texts, models.config.max_texts, "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad(f"'encoding_format' must be \"float\" or \"base64\", not {fmt!r}.", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and dims != model.pipe.dimension:
        raise bad(f"'dimensions': the model {model.name!r} returns {model.pipe.dimension}-dimensional vectors and "
                  "cannot shorten them; leave 'dimensions' out.", "dimensions", code="invalid_parameter")
    tokens = models.check_tokens(model, await models.count_tokens(model, texts), "input")
    vectors = await models.run(model, "embed", texts, model.pipe, tokens)
    data = [{"object": "embedding", "index": i, "embedding": _vector(v, fmt)} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": model.name,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _vector(v: np.ndarray, fmt: str) -> Any:
    """Float: every float32 value exactly (as a float64 literal); base64: little-endian float32 bytes."""
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")
    return v.tolist()


async def rerank(request: Request, models: ModelSet) -> Response:
    body = await read_json(request, models)
    model = models.get(body.get("model"), "/rerank", ("rerank",))
    request.state.model = model.name
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise bad("'query' must be a non-empty string.", "query")
    cohere = "documents" in body
    if cohere == ("texts" in body):
        raise bad("give the documents to rank as 'documents' (Cohere style) or 'texts' (TEI style), one of them.",
                  "documents")
    param = "documents" if cohere else "texts"
    docs = documents(body[param], param)
    check_count(docs, models.config.max_texts, param)
    top_n = optional_int(body, "top_n")
    give_text = flag(body, "return_documents" if cohere else "return_text")
    activation = "none" if flag(body, "raw_scores") else None
    pairs = [(query, d) for d in docs]
    tokens = models.check_tokens(model, await models.count_tokens(model, pairs), param)
    pipe = model.pipe

    def run(batch: list[Any]) -> Any:
        return pipe.predict(batch, activation=activation)

    scores = await models.run(model, ("rerank", activation), pairs, run, tokens)
    order = sorted(range(len(docs)), key=lambda i: -float(scores[i]))[:top_n]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    if cohere:
        results = [{"index": i, "relevance_score": float(scores[i]), **({"document": {"text": docs[i]}}
                                                                        if give_text else {})} for i in order]
        return JSONResponse({"model": model.name, "results": results, "usage": usage})
    return JSONResponse([{"index": i, "score": float(scores[i]), **({"text": docs[i]} if give_text else {})}
                         for i in order])


async def predict(request: Request, models: ModelSet) -> Response:
    body = await read_json(request, models)
    model = models.get(body.get("model"), "/predict", None)
    request.state.model = model.name
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad(f"'parameters' must be an object of the pipeline's options, not {type_name(params)}.",
                  "parameters")
    if "inputs" not in body:
        raise bad("'inputs' is required.", "inputs", code="missing_input")
    items, single = _parse(model, body["inputs"])
    check_count(items, models.config.max_texts, "inputs")
    tokens = models.check_tokens(model, await models.count_tokens(model, items), "inputs")
    pipe = model.pipe

    def run(batch: list[Any]) -> Any:
        return pipe(batch, **params)

    key = ("predict", json.dumps(params, sort_keys=True))
    results = await models.run(model, key, items, run, tokens)
    outputs = jsonable(results[0] if single else list(results))
    return JSONResponse({"model": model.name, "task": model.task, "outputs": outputs,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _parse(model: ServedModel, value: Any) -> tuple[list[Any], bool]:
    spec = get_task(model.task)
    try:
        return parser_for(model.task, spec.input_kind)(value, spec.pairs)
    except InputError as e:
        raise from_edgebert(InputError(f"model {model.name!r} ({model.task}): {e}"), "inputs") from e


def jsonable(x: Any) -> Any:
    """Runtime outputs (numpy arrays and scalars, tuples) as plain JSON values."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x
