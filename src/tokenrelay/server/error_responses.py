"""Our errors as HTTP responses: one JSON shape, a stable code, the fix (docs/protocol.md)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from tokenrelay.errors import (
    BackendUnavailable,
    ErrorCode,
    TokenRelayError,
    ValidationError,
    internal_error,
)
from tokenrelay.i18n import tr
from tokenrelay.server.asgi import retry_after_value
from tokenrelay.spelling import SPELLING_CONFLICT

logger = logging.getLogger("tokenrelay.server")


def _json_safe_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in errors
    ]


def _describe(errors: list[dict[str, Any]]) -> str:
    """The first error, said for people; pydantic's own text (English) as a parameter."""
    if not errors:
        return tr("invalid request")
    first = errors[0]
    if first["type"] == "json_invalid":
        return tr("request body is not valid JSON ({detail})", detail=first["msg"])
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    if first["type"] == "extra_forbidden":
        kind = tr("query parameter") if first["loc"][:1] == ["query"] else tr("field")
        return tr("unknown {kind} {field!r}", kind=kind, field=where)
    if first["type"] == SPELLING_CONFLICT:
        return str(first["msg"])
    message = str(first["msg"])
    if first["type"] == "missing" and where:
        return tr("{field} is required", field=where)
    return tr("{field}: {detail}", field=where, detail=message) if where else message


def validation_error(errors: list[Any]) -> ValidationError:
    """VALIDATION_ERROR for pydantic's errors (locations as FastAPI gives them: "body", ...)."""
    safe = _json_safe_errors(errors)
    return ValidationError(
        _describe(safe),
        suggestion=tr("fix the request as described; see /docs for the schema"),
        details=safe,
    )


def error_response(exc: TokenRelayError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = retry_after_value(exc.retry_after_s)
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


def _backend_connection_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of the backends we may run with; the packages are optional."""
    found: list[type[BaseException]] = [ConnectionError]  # refused, reset, ... (OSError's)
    try:
        import redis.exceptions as redis_errors

        found += [redis_errors.ConnectionError, redis_errors.TimeoutError]
    except ImportError:  # pragma: no cover - depends on the install
        pass
    try:
        import asyncpg.exceptions as pg_errors

        found += [
            pg_errors.PostgresConnectionError,
            pg_errors.InterfaceError,
            pg_errors.TooManyConnectionsError,
            pg_errors.AdminShutdownError,
        ]
    except ImportError:  # pragma: no cover - depends on the install
        pass
    return tuple(found)


_CONNECTION_ERRORS: tuple[type[BaseException], ...] | None = None
BACKEND_RETRY_AFTER_S = 1.0


def boundary_error(exc: Exception, where: str = "") -> TokenRelayError:
    """What the client is told of an exception that reached the boundary unanswered.

    - our errors: as they are (a middleware raised it, where no route handler sees it);
    - a lost connection to Redis or PostgreSQL: 503 BACKEND_UNAVAILABLE, retryable, with
      Retry-After; what to check goes to the log and to `details`, not to the message;
    - anything else: logged with its trace, INTERNAL_ERROR without its text."""
    global _CONNECTION_ERRORS
    if _CONNECTION_ERRORS is None:
        _CONNECTION_ERRORS = _backend_connection_errors()
    if isinstance(exc, TokenRelayError):
        found = exc
    elif isinstance(exc, _CONNECTION_ERRORS):
        found = BackendUnavailable(
            tr("a service this server needs is unreachable"),
            suggestion=tr("retry in a moment"),
            details={"operator": "check TOKENRELAY_REDIS_URL, TOKENRELAY_DATABASE_URL and /readyz"},
        )
    else:
        logger.exception("unhandled error on %s", where)
        return internal_error(exc)
    if found.code == ErrorCode.BACKEND_UNAVAILABLE:
        if found.retry_after_s is None:
            found.retry_after_s = BACKEND_RETRY_AFTER_S
        logger.warning(
            "backend unavailable on %s: %s (%s)%s",
            where,
            found.message,
            type(exc.__cause__ or exc).__name__,
            f"; {found.details.get('operator', '')}" if isinstance(found.details, dict) else "",
        )
    return found
