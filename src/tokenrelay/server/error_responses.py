"""Our errors as HTTP responses: one JSON shape, a stable code, the fix (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from tokenrelay.errors import TokenRelayError, ValidationError
from tokenrelay.server.asgi import retry_after_value


def _json_safe_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in errors
    ]


def _describe(errors: list[dict[str, Any]]) -> str:
    first = errors[0] if errors else {"loc": [], "msg": "invalid request", "type": ""}
    if first["type"] == "json_invalid":
        return f"request body is not valid JSON ({first['msg']})"
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    if first["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    message = str(first["msg"])
    return f"{where}: {message}" if where else message


def validation_error(errors: list[Any]) -> ValidationError:
    """VALIDATION_ERROR for pydantic's errors (locations as FastAPI gives them: "body", ...)."""
    safe = _json_safe_errors(errors)
    return ValidationError(
        _describe(safe),
        suggestion="fix the request as described; see /docs for the schema",
        details=safe,
    )


def error_response(exc: TokenRelayError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = retry_after_value(exc.retry_after_s)
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)
