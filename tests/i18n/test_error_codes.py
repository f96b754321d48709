"""Every error code has a Korean message and suggestion, made by the code that raises it,
and the code itself never changes with the language; so do the errors of every other place
that makes one (`SITES`), whose fixes for the operator stay in `details`.

`test_marked_at_source.py` checks that no other place makes its text in English on the spot,
and `test_catalogues.py` that every marked text has its Korean translation."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable

import pytest

from tokenrelay.errors import ErrorCode, TokenRelayError, internal_error
from tokenrelay.events import ErrorEvent
from tokenrelay.i18n import set_locale
from tokenrelay.planner.models import check_dates
from tokenrelay.providers._errors import Upstream, upstream_error
from tokenrelay.server.error_responses import boundary_error
from tokenrelay.server.limits import rate_limited
from tokenrelay.server.security import unauthorized
from tokenrelay.sessions.base import session_busy, session_not_found
from tokenrelay.streams.log import not_found
from tokenrelay.streams.pacing import idle_timeout
from tokenrelay.streams.redis_reader import _incomplete, _lost, _reader_cut_off
from tokenrelay.streams.runner import CANCEL_REASONS, deadline_error

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
    ErrorCode.TIMEOUT: lambda: deadline_error(300),
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


def _raised(make: Callable[[], object]) -> TokenRelayError:
    try:
        make()
    except TokenRelayError as exc:
        return exc
    raise AssertionError("no error")


def _sites() -> list[tuple[str, ErrorCode, Callable[[], TokenRelayError]]]:
    """Every other place that makes an error a user can be shown, as it makes it."""
    from pathlib import Path

    from tokenrelay.limits.redis import limits_down
    from tokenrelay.providers import _errors as upstream
    from tokenrelay.providers.llama_structured import response_format_schema
    from tokenrelay.providers.model_files import bundled_model_path, resolve_model_path
    from tokenrelay.retrieval.embedding import checked
    from tokenrelay.server.json_checks import lone_surrogate, too_deep
    from tokenrelay.server.limits import body_too_large, server_busy, too_many_streams
    from tokenrelay.sessions.base import not_editable, nothing_to_regenerate
    from tokenrelay.streams.redis import backend_down
    from tokenrelay.tools.registry import ToolRegistry

    e = ErrorCode
    return [
        ("idle timeout", e.TIMEOUT, lambda: idle_timeout(30)),
        ("cancel", e.CANCELLED, lambda: CANCEL_REASONS["request"]),
        ("shutdown", e.BACKEND_UNAVAILABLE, lambda: CANCEL_REASONS["shutdown"]),
        ("reader cut off", e.BACKEND_UNAVAILABLE, _reader_cut_off),
        ("stream log down", e.BACKEND_UNAVAILABLE, lambda: backend_down(ConnectionError())),
        ("limits down", e.BACKEND_UNAVAILABLE, lambda: limits_down(ConnectionError())),
        ("too many streams", e.RATE_LIMIT, lambda: too_many_streams(4, 1.0)),
        ("server busy", e.BACKEND_UNAVAILABLE, lambda: server_busy(100, 1.0)),
        ("body too large", e.VALIDATION_ERROR, lambda: body_too_large(10, "MAX")),
        ("too deep", e.VALIDATION_ERROR, too_deep),
        ("lone surrogate", e.VALIDATION_ERROR, lone_surrogate),
        ("nothing to regenerate", e.VALIDATION_ERROR, lambda: nothing_to_regenerate("s1")),
        ("not editable", e.VALIDATION_ERROR, lambda: not_editable("s1", "m1")),
        ("unknown tool", e.VALIDATION_ERROR, lambda: _raised(lambda: ToolRegistry().check(["x"]))),
        (
            "response format",
            e.VALIDATION_ERROR,
            lambda: _raised(lambda: response_format_schema({"type": "yaml"})),
        ),
        ("upstream timed out", e.PROVIDER_UNAVAILABLE, lambda: upstream.timed_out(OPENAI, 5)),
        ("upstream cut", e.PROVIDER_UNAVAILABLE, lambda: upstream.stream_cut(OPENAI)),
        ("missing sdk", e.PROVIDER_ERROR, lambda: upstream.missing_sdk("openai", "openai")),
        ("missing key", e.PROVIDER_AUTH, lambda: upstream.missing_key("OPENAI_API_KEY")),
        (
            "no bundled model",
            e.PROVIDER_UNAVAILABLE,
            lambda: _raised(lambda: bundled_model_path("tokenrelay-no-such-package")),
        ),
        (
            "no model file",
            e.PROVIDER_UNAVAILABLE,
            lambda: _raised(lambda: resolve_model_path(Path("/nonexistent/m.gguf"))),
        ),
        (
            "embeddings",
            e.PROVIDER_ERROR,
            lambda: _raised(lambda: checked([[1.0]], 2, 1, "e5")),
        ),
    ]


SITES = _sites()
EVERY = [(code.value, code, MAKERS[code]) for code in ErrorCode] + SITES


@pytest.mark.parametrize(("name", "code", "make"), EVERY, ids=[s[0] for s in EVERY])
def test_korean_and_english_for_every_code(
    name: str, code: ErrorCode, make: Callable[[], TokenRelayError]
) -> None:
    body_ko, event_ko = _in("ko", make)
    body_en, event_en = _in("en", make)
    assert body_ko["code"] == body_en["code"] == event_ko.code == code.value
    for text in (body_ko["message"], body_ko["suggestion"], event_ko.message, event_ko.suggestion):
        assert HANGUL.search(str(text)), text
    for text in (body_en["message"], body_en["suggestion"], event_en.message):
        assert not HANGUL.search(str(text)), text
    assert body_ko["retryable"] == body_en["retryable"]
    # what only the operator can do is in details (in English), never in the user's text
    for text in (
        body_ko["message"],
        body_ko["suggestion"],
        body_en["message"],
        body_en["suggestion"],
    ):
        assert "TOKENRELAY" not in str(text) and "pip install" not in str(text), text


def test_operator_advice_stays_in_details_in_english() -> None:
    body, _ = _in("ko", lambda: CANCEL_REASONS["disconnect"])
    assert "TOKENRELAY_DISCONNECT_GRACE_S" in str(body["details"])
    assert "TOKENRELAY" not in str(body["message"]) + str(body["suggestion"])


def test_a_lost_backend_at_the_boundary() -> None:
    body, _ = _in("ko", lambda: boundary_error(ConnectionRefusedError(), "GET /"))
    assert body["code"] == "BACKEND_UNAVAILABLE"
    assert HANGUL.search(str(body["message"]))
