"""Error hierarchy with the stable error codes of the wire protocol (DESIGN.md §3).

Every error that reaches a client carries a `code` from `ErrorCode`, a `message` that says what
went wrong, a `suggestion` that says how to fix it, and whether retrying may help. The message
and the suggestion are for end users, marked with `i18n.tr` and put in the client's language
where the error becomes a response or an event (`to_dict`, `events.ErrorEvent.from_error`);
advice for operators goes to the log and to `details["operator"]`, in English. Errors found
before a stream starts become plain HTTP errors (`http_status`); errors after it started become
one terminal `error` event.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from tokenrelay.i18n import localize, tr


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_BUSY = "SESSION_BUSY"
    RATE_LIMIT = "RATE_LIMIT"
    UNAUTHORIZED = "UNAUTHORIZED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_AUTH = "PROVIDER_AUTH"
    PROVIDER_RATE_LIMIT = "PROVIDER_RATE_LIMIT"
    CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    STREAM_NOT_FOUND = "STREAM_NOT_FOUND"
    STREAM_INCOMPLETE = "STREAM_INCOMPLETE"
    DOCUMENT_NOT_FOUND = "DOCUMENT_NOT_FOUND"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.SESSION_BUSY: 409,
    ErrorCode.RATE_LIMIT: 429,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.PROVIDER_ERROR: 502,
    ErrorCode.PROVIDER_UNAVAILABLE: 503,
    ErrorCode.PROVIDER_AUTH: 502,
    ErrorCode.PROVIDER_RATE_LIMIT: 429,
    ErrorCode.CONTEXT_TOO_LONG: 400,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.CANCELLED: 499,
    ErrorCode.STREAM_NOT_FOUND: 404,
    ErrorCode.STREAM_INCOMPLETE: 410,
    ErrorCode.DOCUMENT_NOT_FOUND: 404,
    ErrorCode.BACKEND_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}

_DEFAULT_RETRYABLE = frozenset(
    {
        ErrorCode.RATE_LIMIT,
        ErrorCode.SESSION_BUSY,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.PROVIDER_RATE_LIMIT,
        ErrorCode.TIMEOUT,
        ErrorCode.BACKEND_UNAVAILABLE,
    }
)


def http_status_for(code: ErrorCode) -> int:
    return _HTTP_STATUS[code]


class TokenRelayError(Exception):
    """Base of every error we report. Subclasses fix the code; callers give message + fix."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        suggestion: str = "",
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        details: Any = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.suggestion = suggestion
        self.retryable = self.code in _DEFAULT_RETRYABLE if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.details = details

    @property
    def http_status(self) -> int:
        return http_status_for(self.code)

    def to_dict(self) -> dict[str, Any]:
        """The error's JSON body, its message and suggestion in the current language."""
        body: dict[str, Any] = {
            "code": self.code.value,
            "message": localize(self.message),
            "suggestion": localize(self.suggestion),
            "retryable": self.retryable,
        }
        if self.retry_after_s is not None:
            body["retry_after_s"] = self.retry_after_s
        if self.details is not None:
            body["details"] = self.details
        return body


class ValidationError(TokenRelayError):
    code = ErrorCode.VALIDATION_ERROR


class SessionNotFound(TokenRelayError):
    code = ErrorCode.SESSION_NOT_FOUND


class SessionBusy(TokenRelayError):
    """A turn on a session whose previous turn is still being answered (one at a time)."""

    code = ErrorCode.SESSION_BUSY


class StreamNotFound(TokenRelayError):
    code = ErrorCode.STREAM_NOT_FOUND


class StreamIncomplete(TokenRelayError):
    """Events of a stream are gone from the shared log (trimmed, or lost with a Redis restart
    and no owner left to write them again): a reader ends at the gap instead of skipping it."""

    code = ErrorCode.STREAM_INCOMPLETE


class DocumentNotFound(TokenRelayError):
    code = ErrorCode.DOCUMENT_NOT_FOUND


class ProviderError(TokenRelayError):
    """Raised by provider adapters; pick the code that matches the upstream failure."""

    code = ErrorCode.PROVIDER_ERROR


class StreamTimeout(TokenRelayError):
    code = ErrorCode.TIMEOUT


class StreamCancelled(TokenRelayError):
    code = ErrorCode.CANCELLED


class BackendUnavailable(TokenRelayError):
    code = ErrorCode.BACKEND_UNAVAILABLE


def internal_error(exc: BaseException) -> TokenRelayError:
    """Wrap an unexpected exception without leaking its text to clients."""
    return TokenRelayError(
        tr("internal error while producing the answer"),
        suggestion=tr("retry; if it keeps happening, report the trace id"),
        code=ErrorCode.INTERNAL_ERROR,
        retryable=True,
    )


ASK_THE_OPERATOR = tr("try again later; if it keeps failing, tell whoever runs the server")

_E = TypeVar("_E", bound=TokenRelayError)


def misconfigured(
    kind: type[_E],
    message: str,
    operator: str,
    *,
    suggestion: str = ASK_THE_OPERATOR,
    code: ErrorCode | None = None,
    retryable: bool = False,
) -> _E:
    """An error only the server's operator can fix (a package, a setting, a file): the user
    is told what does not work in their language (`message`, a `tr` message); the fix goes to
    `details["operator"]`, in English, which the start-up log and the CLI print."""
    return kind(
        message,
        suggestion=suggestion,
        code=code,
        retryable=retryable,
        details={"operator": operator},
    )
