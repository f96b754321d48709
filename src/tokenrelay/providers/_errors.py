"""Map upstream failures to our error codes; shared by the remote adapters. Pure functions.

Each adapter pulls (HTTP status, error kinds, message, headers) out of its SDK's exception and
calls `classify` / `upstream_error`. The rules (DESIGN.md §3):

- auth (401, 403, `authentication_error`, `API_KEY_INVALID`, ...)  -> PROVIDER_AUTH
- 429 / rate-limit kinds / `RESOURCE_EXHAUSTED`                   -> PROVIDER_RATE_LIMIT, retryable
- context length exceeded (by kind or by the message's wording)   -> CONTEXT_TOO_LONG
- 5xx, 408, overloaded, connection failures, timeouts             -> PROVIDER_UNAVAILABLE, retryable
- anything else                                                   -> PROVIDER_ERROR
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tokenrelay.errors import ErrorCode, ProviderError, misconfigured
from tokenrelay.i18n import tr

_AUTH_KINDS = frozenset(
    {
        "authentication_error",
        "permission_error",
        "invalid_api_key",
        "unauthenticated",
        "permission_denied",
        "api_key_invalid",
        "api_key_expired",
        "authenticationerror",
        "permissiondeniederror",
    }
)
_RATE_KINDS = frozenset(
    {
        "rate_limit_error",
        "rate_limit_exceeded",
        "resource_exhausted",
        "ratelimiterror",
        "insufficient_quota",
    }
)
_UNAVAILABLE_KINDS = frozenset(
    {
        "overloaded_error",
        "api_error",
        "server_error",
        "timeout_error",
        "unavailable",
        "internal",
        "deadline_exceeded",
        "internalservererror",
        "serviceunavailableerror",
        "service_unavailable",
        "overloaded",
    }
)
_CONTEXT_KINDS = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_WORDING = re.compile(
    r"context[ _-]length|context window|maximum context|prompt is too long|too many tokens"
    r"|input token count|exceeds the maximum number of tokens|reduce the length of the messages",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Who we talk to, for messages that say the fix."""

    label: str  # "OpenAI", "the OpenAI-compatible server at http://...", "Anthropic", "Gemini"
    key_env: str  # "OPENAI_API_KEY"
    base_url: str | None = None


def classify(status: int | None, kinds: Iterable[str | None], message: str) -> ErrorCode:
    """Our code for an upstream failure with this HTTP status, error kinds and message."""
    kind_set = {k.lower() for k in kinds if k}
    if status in (401, 403) or kind_set & _AUTH_KINDS:
        return ErrorCode.PROVIDER_AUTH
    if status == 429 or kind_set & _RATE_KINDS:
        return ErrorCode.PROVIDER_RATE_LIMIT
    if kind_set & _CONTEXT_KINDS or _CONTEXT_WORDING.search(message):
        return ErrorCode.CONTEXT_TOO_LONG
    if status == 413:
        return ErrorCode.CONTEXT_TOO_LONG
    if (status is not None and (status >= 500 or status == 408)) or kind_set & _UNAVAILABLE_KINDS:
        return ErrorCode.PROVIDER_UNAVAILABLE
    return ErrorCode.PROVIDER_ERROR


def status_from(value: object) -> int | None:
    """An HTTP status from an int or a numeric string (vLLM puts `"code": 400` in error bodies)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 100 <= value <= 599 else None
    if isinstance(value, str) and value.isdigit():
        return status_from(int(value))
    return None


def retry_after_from_headers(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def duration_seconds(value: object) -> float | None:
    """Parse a protobuf JSON duration such as "37s" or "0.5s" (Gemini `RetryInfo.retryDelay`)."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return max(0.0, float(value[:-1]))
        except ValueError:
            return None
    return None


def suggestion_for(code: ErrorCode, upstream: Upstream, retry_after_s: float | None) -> str:
    if code is ErrorCode.PROVIDER_AUTH:
        return tr("the model provider refused this server's key: tell whoever runs the server")
    if code is ErrorCode.PROVIDER_RATE_LIMIT:
        if retry_after_s is not None:
            return tr("wait {seconds:g}s and retry", seconds=retry_after_s)
        return tr("wait a little and retry")
    if code is ErrorCode.CONTEXT_TOO_LONG:
        return tr(
            "shorten the message, or start a new conversation, or choose a model with a "
            "larger context window"
        )
    if code is ErrorCode.PROVIDER_UNAVAILABLE:
        return tr("retry shortly; if it keeps failing, tell whoever runs the server")
    return tr("check the model name and the request options")


def operator_advice(code: ErrorCode, upstream: Upstream) -> dict[str, str] | None:
    """What the server's operator can do about `code` (the error's `details`, and the log)."""
    if code is ErrorCode.PROVIDER_AUTH:
        return {
            "operator": f"check {upstream.key_env} (or TOKENRELAY_{upstream.key_env}): the key "
            "was refused or lacks access to this model"
        }
    if code is ErrorCode.CONTEXT_TOO_LONG:
        return {"operator": "lower TOKENRELAY_HISTORY_TOKEN_BUDGET to send less history"}
    if code is ErrorCode.PROVIDER_UNAVAILABLE:
        where = upstream.base_url or "the provider's API"
        return {"operator": f"check the provider's status and that {where} is reachable"}
    return None


def upstream_error(
    upstream: Upstream,
    code: ErrorCode,
    detail: str,
    *,
    retry_after_s: float | None = None,
    status: int | None = None,
) -> ProviderError:
    """A ProviderError with a message naming the upstream and a suggestion that says the fix."""
    where = f" (HTTP {status})" if status and status != 200 else ""
    return ProviderError(
        tr(
            "{provider} failed{status}: {detail}",
            provider=upstream.label,
            status=where,
            detail=detail,
        )
        if detail
        else tr("{provider} failed{status}", provider=upstream.label, status=where),
        suggestion=suggestion_for(code, upstream, retry_after_s),
        code=code,
        retry_after_s=retry_after_s,
        details=operator_advice(code, upstream),
    )


def connection_error(upstream: Upstream, detail: str) -> ProviderError:
    return upstream_error(upstream, ErrorCode.PROVIDER_UNAVAILABLE, detail)


def timed_out(upstream: Upstream, timeout_s: float) -> ProviderError:
    """No response within the configured timeout."""
    return connection_error(upstream, f"no response within {timeout_s:g}s")


def unreachable(upstream: Upstream, cause: object) -> ProviderError:
    """The connection failed (refused, reset, DNS); `cause` says how."""
    return connection_error(upstream, f"could not connect ({cause})")


def stream_cut(upstream: Upstream) -> ProviderError:
    """The body ended without a finish reason: a cut connection, not an empty success."""
    return upstream_error(
        upstream,
        ErrorCode.PROVIDER_UNAVAILABLE,
        "the stream ended before the answer was finished (connection cut?)",
    )


def missing_sdk(module: str, extra: str) -> ProviderError:
    return misconfigured(
        ProviderError,
        tr("this model provider is not available on this server"),
        f"the {module!r} package is not installed: pip install 'tokenrelay[{extra}]',"
        " or choose --provider local",
        suggestion=tr("choose another model, or tell whoever runs the server"),
        code=ErrorCode.PROVIDER_ERROR,
    )


def missing_key(key_env: str, *, also: str = "") -> ProviderError:
    alternatives = f", {also}" if also else ""
    return misconfigured(
        ProviderError,
        tr("this model provider is not set up on this server"),
        f"no {key_env}: set it (or TOKENRELAY_{key_env}{alternatives}) before starting"
        " tokenrelay, or choose --provider local",
        suggestion=tr("choose another model, or tell whoever runs the server"),
        code=ErrorCode.PROVIDER_AUTH,
    )
