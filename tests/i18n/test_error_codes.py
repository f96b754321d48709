"""Every error code has a Korean message and suggestion, made by the code that raises it,
and the code itself never changes with the language."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable

import pytest

from tokenrelay.errors import ErrorCode, StreamTimeout, TokenRelayError, internal_error
from tokenrelay.events import ErrorEvent
from tokenrelay.i18n import set_locale
from tokenrelay.planner.models import check_dates
from tokenrelay.providers._errors import Upstream, upstream_error
from tokenrelay.server.error_responses import boundary_error
from tokenrelay.server.limits import rate_limited
from tokenrelay.server.security import unauthorized
from tokenrelay.sessions.base import session_busy, session_not_found
from tokenrelay.streams.log import not_found
from tokenrelay.streams.redis_reader import _incomplete, _lost
from tokenrelay.streams.runner import CANCEL_REASONS

HANGUL = re.compile(r"[가-힣]")
OPENAI = Upstream(label="OpenAI", key_env="OPENAI_API_KEY")


def _dates() -> TokenRelayError:
    from datetime import date

    try:
        check_dates(date(2026, 5, 2), date(2026, 5, 1))
    except TokenRelayError as exc:
        return exc
    raise AssertionError("no error")


def _document() -> TokenRelayError:
    from tokenrelay.errors import DocumentNotFound
    from tokenrelay.i18n import tr

    return DocumentNotFound(
        tr("no document {document_id}", document_id="d1"),
        suggestion=tr("list the documents with GET /api/documents"),
    )


MAKERS: dict[ErrorCode, Callable[[], TokenRelayError]] = {
    ErrorCode.VALIDATION_ERROR: _dates,
    ErrorCode.SESSION_NOT_FOUND: lambda: session_not_found("s1"),
    ErrorCode.SESSION_BUSY: lambda: session_busy("s1", "stream-1"),
    ErrorCode.RATE_LIMIT: lambda: rate_limited(2.0),
    ErrorCode.UNAUTHORIZED: lambda: unauthorized(sent=False),
    ErrorCode.PROVIDER_ERROR: lambda: upstream_error(OPENAI, ErrorCode.PROVIDER_ERROR, ""),
    ErrorCode.PROVIDER_UNAVAILABLE: lambda: upstream_error(
        OPENAI, ErrorCode.PROVIDER_UNAVAILABLE, ""
    ),
    ErrorCode.PROVIDER_AUTH: lambda: upstream_error(
        OPENAI, ErrorCode.PROVIDER_AUTH, "", status=401
    ),
    ErrorCode.PROVIDER_RATE_LIMIT: lambda: upstream_error(
        OPENAI, ErrorCode.PROVIDER_RATE_LIMIT, "", retry_after_s=3
    ),
    ErrorCode.CONTEXT_TOO_LONG: lambda: upstream_error(OPENAI, ErrorCode.CONTEXT_TOO_LONG, ""),
    # as the runner makes it (streams/runner.py formats its own English text)
    ErrorCode.TIMEOUT: lambda: StreamTimeout(
        "the answer took longer than the 300 s limit", suggestion="ask for a shorter answer"
    ),
    ErrorCode.CANCELLED: lambda: CANCEL_REASONS["disconnect"],
    ErrorCode.STREAM_NOT_FOUND: lambda: not_found("abc"),
    ErrorCode.STREAM_INCOMPLETE: _incomplete,
    ErrorCode.DOCUMENT_NOT_FOUND: _document,
    ErrorCode.BACKEND_UNAVAILABLE: _lost,
    ErrorCode.INTERNAL_ERROR: lambda: internal_error(RuntimeError("secret")),
}


def test_every_code_has_a_maker() -> None:
    assert set(MAKERS) == set(ErrorCode)


def _in(locale: str, make: Callable[[], TokenRelayError]) -> tuple[dict[str, object], ErrorEvent]:
    def run() -> tuple[dict[str, object], ErrorEvent]:
        set_locale(locale)
        error = make()
        return error.to_dict(), ErrorEvent.from_error(error)

    return contextvars.copy_context().run(run)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_korean_and_english_for_every_code(code: ErrorCode) -> None:
    body_ko, event_ko = _in("ko", MAKERS[code])
    body_en, event_en = _in("en", MAKERS[code])
    assert body_ko["code"] == body_en["code"] == event_ko.code == code.value
    for text in (body_ko["message"], body_ko["suggestion"], event_ko.message, event_ko.suggestion):
        assert HANGUL.search(str(text)), text
    for text in (body_en["message"], body_en["suggestion"], event_en.message):
        assert not HANGUL.search(str(text)), text
    assert body_ko["retryable"] == body_en["retryable"]


def test_operator_advice_stays_in_details_in_english() -> None:
    body, _ = _in("ko", lambda: CANCEL_REASONS["disconnect"])
    assert "TOKENRELAY_DISCONNECT_GRACE_S" in str(body["details"])
    assert "TOKENRELAY" not in str(body["message"]) + str(body["suggestion"])


def test_a_lost_backend_at_the_boundary() -> None:
    body, _ = _in("ko", lambda: boundary_error(ConnectionRefusedError(), "GET /"))
    assert body["code"] == "BACKEND_UNAVAILABLE"
    assert HANGUL.search(str(body["message"]))
