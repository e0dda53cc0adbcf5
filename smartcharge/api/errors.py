"""The REST API's one error path: every error under /api is JSON `{"error", "detail"}`.

Handlers raise `ApiError` (or an aiohttp `HTTPException`); the `json_errors` middleware turns
either into the JSON body, and any other exception into a 500 that names no internals (the
traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("smartcharge.api")

_STATUS_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large",
                 422: "invalid_body", 429: "too_many_requests", 502: "bad_gateway", 504: "station_timeout"}


class ApiError(Exception):
    """An API answer other than success: status, short code, and a sentence for a person."""

    def __init__(self, status: int, error: str, detail: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    @property
    def response(self) -> web.Response:
        response = error_response(self.status, self.error, self.detail)
        response.headers.update(self.headers)
        return response


def error_response(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "detail": detail, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error.response
    except web.HTTPException as http_error:
        if not request.path.startswith("/api") or http_error.status < 400 \
                or http_error.content_type == "application/json":
            raise
        response = error_response(http_error.status,
                                  _STATUS_NAMES.get(http_error.status, "error"),
                                  http_error.text or http_error.reason)
        for header in ("WWW-Authenticate", "Allow"):
            if header in http_error.headers:
                response.headers[header] = http_error.headers[header]
        return response
    except Exception:  # a task boundary: log with context, answer without internals
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "the server failed to handle this "
                              "request; see the server log")
