"""The pure pieces shared by the remote adapters: tool-call assembly, error mapping, formats."""

from __future__ import annotations

import pytest

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode
from tokenrelay.providers._errors import (
    Upstream,
    classify,
    duration_seconds,
    missing_key,
    retry_after_from_headers,
    status_from,
    upstream_error,
)
from tokenrelay.providers._formats import (
    JsonFormat,
    arguments_text,
    configured_model,
    json_format,
    settle_finish,
)
from tokenrelay.providers._toolcalls import ToolCallAccumulator, parse_arguments
from tokenrelay.providers.base import ToolCall


def test_pieces_are_assembled_per_index_in_order() -> None:
    acc = ToolCallAccumulator()
    acc.add(1, id="b", name="second", arguments='{"x"')
    acc.add(0, id="a", name="first", arguments="")
    acc.add(1, arguments=": 1}")
    acc.add(0, arguments='{"q": "서울"}')
    assert acc.finish() == [
        ToolCall("a", "first", {"q": "서울"}),
        ToolCall("b", "second", {"x": 1}),
    ]
    assert not acc


def test_first_id_and_name_win() -> None:
    acc = ToolCallAccumulator()
    acc.add(0, id="call_1", name="f", arguments="{}")
    acc.add(0, id="call_2", name="g")
    assert acc.finish() == [ToolCall("call_1", "f", {})]


def test_start_with_whole_arguments_and_pop() -> None:
    acc = ToolCallAccumulator()
    acc.start(3, id="toolu_1", name="f", arguments={"a": 1})
    assert acc.pop(2) is None
    assert acc.pop(3) == ToolCall("toolu_1", "f", {"a": 1})
    acc.start(4, id="toolu_2", name="g", arguments={})
    acc.add(4, arguments='{"b": 2}')
    assert acc.pop(4) == ToolCall("toolu_2", "g", {"b": 2})


def test_missing_id_gets_one() -> None:
    acc = ToolCallAccumulator()
    acc.add(0, name="f")
    [call] = acc.finish()
    assert call.id.startswith("call_") and call.arguments == {}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", {}),
        ("  ", {}),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ('{"a": 1', {"_raw": '{"a": 1'}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
    ],
)
def test_parse_arguments_keeps_malformed_text(text: str, parsed: dict[str, object]) -> None:
    assert parse_arguments(text) == parsed


def test_raw_arguments_go_back_as_sent() -> None:
    assert arguments_text({"_raw": '{"a": 1'}) == '{"a": 1'
    assert arguments_text({"city": "서울"}) == '{"city": "서울"}'


@pytest.mark.parametrize(
    ("status", "kinds", "message", "code"),
    [
        (401, (), "", ErrorCode.PROVIDER_AUTH),
        (403, (), "", ErrorCode.PROVIDER_AUTH),
        (
            400,
            ("INVALID_ARGUMENT", "API_KEY_INVALID"),
            "API key not valid",
            ErrorCode.PROVIDER_AUTH,
        ),
        (429, (), "", ErrorCode.PROVIDER_RATE_LIMIT),
        (None, ("rate_limit_error",), "", ErrorCode.PROVIDER_RATE_LIMIT),
        (400, ("invalid_request_error", "context_length_exceeded"), "", ErrorCode.CONTEXT_TOO_LONG),
        (400, (), "prompt is too long: 215463 tokens > 200000 maximum", ErrorCode.CONTEXT_TOO_LONG),
        (
            400,
            (),
            "This model's maximum context length is 4096 tokens.",
            ErrorCode.CONTEXT_TOO_LONG,
        ),
        (413, (), "request too large", ErrorCode.CONTEXT_TOO_LONG),
        (500, (), "", ErrorCode.PROVIDER_UNAVAILABLE),
        (529, ("overloaded_error",), "", ErrorCode.PROVIDER_UNAVAILABLE),
        (None, ("overloaded_error",), "Overloaded", ErrorCode.PROVIDER_UNAVAILABLE),
        (None, ("server_error",), "", ErrorCode.PROVIDER_UNAVAILABLE),
        (408, (), "", ErrorCode.PROVIDER_UNAVAILABLE),
        (404, ("not_found_error",), "model: nope", ErrorCode.PROVIDER_ERROR),
        (None, (None,), "", ErrorCode.PROVIDER_ERROR),
    ],
)
def test_classify(
    status: int | None, kinds: tuple[str | None, ...], message: str, code: ErrorCode
) -> None:
    assert classify(status, kinds, message) is code


def test_status_from_error_bodies() -> None:
    assert status_from(500) == 500
    assert status_from("400") == 400
    assert status_from("rate_limit_exceeded") is None
    assert status_from(True) is None
    assert status_from(7) is None


def test_retry_after() -> None:
    assert retry_after_from_headers({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_from_headers({"retry-after": "7"}) == 7.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_from_headers({"retry-after": date}, now=1445412480.0) == 10.0
    assert retry_after_from_headers({"retry-after": "soon"}) is None
    assert retry_after_from_headers(None) is None
    assert duration_seconds("37s") == 37.0
    assert duration_seconds("0.5s") == 0.5
    assert duration_seconds(37) is None


def test_error_messages_say_the_fix() -> None:
    up = Upstream(label="OpenAI", key_env="OPENAI_API_KEY", base_url="http://127.0.0.1:8000/v1")
    auth = upstream_error(up, ErrorCode.PROVIDER_AUTH, "bad key", status=401)
    assert auth.message == "OpenAI failed (HTTP 401): bad key"
    assert "OPENAI_API_KEY" in auth.details["operator"] and not auth.retryable
    assert "OPENAI_API_KEY" not in auth.suggestion
    limited = upstream_error(up, ErrorCode.PROVIDER_RATE_LIMIT, "slow down", retry_after_s=7)
    assert limited.retryable and limited.retry_after_s == 7 and "7s" in limited.suggestion
    down = upstream_error(up, ErrorCode.PROVIDER_UNAVAILABLE, "refused")
    assert "http://127.0.0.1:8000/v1" in down.details["operator"] and down.retryable
    assert "http" not in down.suggestion  # the address is for the operator, not the user
    missing = missing_key("GEMINI_API_KEY", also="GOOGLE_API_KEY")
    assert missing.code is ErrorCode.PROVIDER_AUTH
    assert missing.message == "this model provider is not set up on this server"
    assert missing.details["operator"] == (
        "no GEMINI_API_KEY: set it (or TOKENRELAY_GEMINI_API_KEY, GOOGLE_API_KEY) before "
        "starting tokenrelay, or choose --provider local"
    )
    assert "GEMINI" not in missing.message + missing.suggestion  # the key is the operator's


def test_json_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert json_format(None) is None
    assert json_format({"type": "text"}) is None
    assert json_format({"type": "json_object"}) == JsonFormat(schema=None)
    assert json_format(schema) == JsonFormat(schema=schema)
    wrapped = {
        "type": "json_schema",
        "json_schema": {"name": "a", "schema": schema, "strict": True},
    }
    assert json_format(wrapped) == JsonFormat(schema=schema, name="a", strict=True)


def test_settle_finish() -> None:
    assert settle_finish("stop", called_tools=True) == "tool_calls"
    assert settle_finish("stop", called_tools=False) == "stop"
    assert settle_finish("length", called_tools=True) == "length"


def test_model_setting_applies_to_the_configured_provider() -> None:
    settings = Settings(provider="openai", model="llama3.1:8b")
    assert configured_model(settings, "openai", "gpt-4o-mini") == "llama3.1:8b"
    assert configured_model(settings, "gemini", "gemini-2.5-flash") == "gemini-2.5-flash"
    assert configured_model(Settings(provider="openai"), "openai", "gpt-4o-mini") == "gpt-4o-mini"
