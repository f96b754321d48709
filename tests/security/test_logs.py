"""Log helpers: redaction, the finished-stream line, the secret scrubber."""

from __future__ import annotations

import json
import logging

import pytest

from tokenrelay.config import Settings
from tokenrelay.logs import (
    REDACTED,
    JsonFormatter,
    log_stream_finished,
    redact_content,
    redact_query,
    redact_secrets,
    secrets_of,
)


def test_redact_query_hides_keys_always_and_text_unless_asked() -> None:
    q = "message=secret+plan&token=abcdefabcdefabcdef&event_names=false"
    safe = redact_query(q)
    assert "abcdef" not in safe and "secret" not in safe and "event_names=false" in safe
    with_content = redact_query(q, log_content=True)
    assert "secret+plan" in with_content and "abcdef" not in with_content
    assert redact_query("") == ""


def test_redact_content_and_secrets() -> None:
    assert redact_content("hello", log_content=False) == {"chars": 5}
    assert redact_content("hello", log_content=True) == "hello"
    assert redact_secrets("key=abc123456789 x", ["abc123456789"]) == f"key={REDACTED} x"


def test_secrets_of_settings_finds_every_key() -> None:
    settings = Settings(
        api_keys="alice:alice-key-0123456789abcdef,bare-key-0123456789abcdef",  # type: ignore[arg-type]
        openai_api_key="sk-openai-0123456789",  # type: ignore[arg-type]
    )
    found = secrets_of(settings)
    for secret in (
        "alice-key-0123456789abcdef",
        "bare-key-0123456789abcdef",
        "sk-openai-0123456789",
    ):
        assert secret in found


def test_formatter_scrubs_secrets_from_any_field() -> None:
    formatter = JsonFormatter(secrets=["alice-key-0123456789abcdef"])
    record = logging.makeLogRecord(
        {
            "msg": "bad key %s",
            "args": ("alice-key-0123456789abcdef",),
            "levelno": 30,
            "levelname": "WARNING",
            "extra_field": "x alice-key-0123456789abcdef",
        }
    )
    line = formatter.format(record)
    assert "alice-key" not in line and json.loads(line)["extra_field"] == f"x {REDACTED}"


@pytest.mark.parametrize("log_content", [False, True])
def test_stream_finished_line(caplog: pytest.LogCaptureFixture, log_content: bool) -> None:
    with caplog.at_level(logging.INFO, logger="tokenrelay.streams"):
        log_stream_finished(
            trace_id="t1",
            stream_id="s1",
            session_id="sess",
            owner="alice",
            provider="scripted",
            model="m",
            outcome="error",
            error_code="TIMEOUT",
            prompt_tokens=3,
            completion_tokens=5,
            ttft_s=0.1234567,
            duration_s=1.5,
            message="the user's secret question",
            answer="partial",
            log_content=log_content,
        )
    (record,) = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "stream_finished"
    for key, value in {
        "trace_id": "t1",
        "stream_id": "s1",
        "session_id": "sess",
        "owner": "alice",
        "provider": "scripted",
        "model": "m",
        "outcome": "error",
        "error_code": "TIMEOUT",
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "ttft_s": 0.123457,
        "duration_s": 1.5,
    }.items():
        assert line[key] == value
    if log_content:
        assert line["user_message"] == "the user's secret question"
    else:
        assert "secret question" not in json.dumps(line)
        assert line["user_message"] == {"chars": 26}
