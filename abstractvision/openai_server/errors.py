"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with a fitting status.

OpenAI clients (and our own backend) read ``message`` and ``param``; an ``InvalidRequestError``
names its field in ``param`` so the caller knows which argument to change.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..backends._openai_http import RemoteServiceError
from ..errors import (
    AbstractVisionError,
    ArtifactNotFoundError,
    BackendNotConfiguredError,
    BusyError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
    UnknownModelError,
)

__all__ = ["ApiError", "classify", "error_body", "error_response", "exception_handlers"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP-level refusal raised by the routes (bad form, missing job, too large, auth)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers = headers
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type,
        )


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def classify(exc: Exception) -> ApiError:
    """The status and OpenAI error fields for one of our exceptions."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc)
    if isinstance(exc, InvalidRequestError):
        return ApiError(400, message, param=exc.field, code="invalid_value")
    if isinstance(exc, UnknownModelError):
        return ApiError(404, message, param="model", code="model_not_found")
    if isinstance(exc, CapabilityNotSupportedError):
        return ApiError(400, message, code="unsupported")
    if isinstance(exc, ArtifactNotFoundError):
        return ApiError(404, message, code="not_found")
    if isinstance(exc, GenerationCancelledError):
        return ApiError(409, message, code="cancelled")
    if isinstance(exc, RemoteServiceError):  # an upstream service behind this server
        status = exc.status_code if 400 <= exc.status_code < 500 else 502
        return ApiError(
            status,
            exc.server_message,
            param=exc.param,
            code=exc.code,
            type=exc.error_type or "upstream_error",
        )
    if isinstance(exc, BusyError):
        return ApiError(
            429,
            message,
            code="busy",
            type="rate_limit",
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, OutOfMemoryError):
        return ApiError(503, message, code="out_of_memory", type="server_error")
    if isinstance(exc, BackendNotConfiguredError):
        return ApiError(503, message, type="server_error")
    if isinstance(exc, AbstractVisionError):
        return ApiError(500, message, type="server_error")
    if isinstance(exc, HTTPException):
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ApiError(exc.status_code, str(exc.detail), type=kind)
    log.exception("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__})", type="server_error")


def error_response(exc: Exception) -> JSONResponse:
    error = classify(exc)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else error.headers
    body = error_body(error.message, error.type, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc)


# Expected errors go through Starlette's ExceptionMiddleware (no traceback); others are logged.
exception_handlers = {
    ApiError: _handle,
    AbstractVisionError: _handle,
    HTTPException: _handle,
    Exception: _handle,
}
