"""HTTP errors in the documented OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``.

Every refusal the server makes is an :class:`ApiError`; an :class:`~edgebert.errors.EdgebertError` from the
runtime (bad input, a limit, a too-long text) is mapped onto one by :func:`from_edgebert`. Nothing else
reaches the client: an unexpected exception becomes a 500 with a generic message (its traceback goes to
the server's log, never into the response).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from edgebert.errors import ConfigError, EdgebertError, InputError, LimitError, LongTextError

INVALID = "invalid_request_error"
SERVER = "server_error"


class ApiError(EdgebertError):
    """A refusal with its HTTP status; ``type``/``code``/``param`` follow OpenAI's error object. Raised inside
    the request handlers and turned into the response there (it never reaches a Python caller)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def from_edgebert(e: EdgebertError, param: str | None = None) -> ApiError:
    """The HTTP face of a runtime error: client mistakes are 4xx, anything else a 500."""
    if isinstance(e, LongTextError):
        return ApiError(400, str(e), code="context_length_exceeded", param=param)
    if isinstance(e, LimitError):
        return ApiError(413, str(e), code="limit_exceeded", param=param)
    if isinstance(e, ConfigError):
        return ApiError(400, str(e), code="invalid_parameter", param=param)
    if isinstance(e, InputError):
        return ApiError(400, str(e), code="invalid_input", param=param)
    return ApiError(500, f"the model failed: {e}", type=SERVER, code="model_error")


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    """A 400 for a request field of the wrong type or value."""
    return ApiError(400, message, code=code, param=param)


def type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    names = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
