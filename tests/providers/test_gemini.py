"""Gemini adapter: raw streamGenerateContent SSE transcripts through MockTransport into the SDK."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.providers.remote_wire import Replayer, Reply, WireServer, load, mock_client
from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers.base import (
    ChatMessage,
    Finish,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCallPart,
    ToolSpec,
    Usage,
)
from tokenrelay.providers.gemini import GeminiProvider

HELLO = ProviderRequest(messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")))
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(*names: str, max_retries: int = 0) -> tuple[GeminiProvider, Replayer]:
    client, replayer = mock_client(*(load("gemini", n) for n in names))
    p = GeminiProvider(
        api_key="AIza-test",
        max_retries=max_retries,
        retry_initial_delay_s=0.01,
        http_client=client,
    )
    return p, replayer


async def collect(stream: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in stream]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_text_usage_and_finish() -> None:
    p, replayer = provider("text")
    events = await collect(p.stream(HELLO))
    assert text_of(events) == "Hello! 안녕하세요."
    # completion counts the thinking tokens too (billed as output)
    assert events[-2:] == [Usage(prompt_tokens=9, completion_tokens=37), Finish("stop")]
    sent = replayer.requests[0]
    assert sent.path.endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert sent.query == "alt=sse"
    assert sent.headers["x-goog-api-key"] == "AIza-test"
    body = sent.json
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]


async def test_request_options_pass_through() -> None:
    p, replayer = provider("text")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = ProviderRequest(
        messages=HELLO.messages,
        model="gemini-2.5-pro",
        temperature=0.3,
        max_tokens=77,
        tools=(WEATHER,),
        tool_choice="get_weather",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    await collect(p.stream(request))
    sent = replayer.requests[0]
    assert "/models/gemini-2.5-pro:" in sent.path
    config = sent.json["generationConfig"]
    assert config["temperature"] == 0.3
    assert config["maxOutputTokens"] == 77
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == schema
    [declaration] = sent.json["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_weather"
    assert declaration["description"] == WEATHER.description
    # this SDK sends the proto field name as is; the API's proto-JSON accepts both spellings
    schema_sent = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    assert schema_sent == WEATHER.parameters
    assert sent.json["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["get_weather"],
    }


async def test_function_calls_and_thought_signature_round_trip() -> None:
    p, replayer = provider("tool_call", "text")
    events = await collect(p.stream(ProviderRequest(messages=HELLO.messages, tools=(WEATHER,))))
    calls = [e.call for e in events if isinstance(e, ToolCallPart)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Seoul", "unit": "c"}),
        ("get_time", {"tz": "Asia/Seoul"}),
    ]
    assert all(c.id.startswith("call_") for c in calls)  # Gemini sent no ids: we made them
    assert events[-2:] == [Usage(prompt_tokens=74, completion_tokens=86), Finish("tool_calls")]

    history = (
        *HELLO.messages,
        ChatMessage("assistant", "", tool_calls=tuple(calls)),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id=calls[0].id),
        ChatMessage("tool", "14:05", tool_call_id=calls[1].id),
    )
    await collect(p.stream(ProviderRequest(messages=history, tools=(WEATHER,))))
    contents = replayer.requests[1].json["contents"]
    signature = load("gemini", "tool_call").body.split(b'"thoughtSignature": "')[1].split(b'"')[0]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {
                    "id": calls[0].id,
                    "name": "get_weather",
                    "args": calls[0].arguments,
                },
                "thoughtSignature": signature.decode(),
            },
            {"functionCall": {"id": calls[1].id, "name": "get_time", "args": calls[1].arguments}},
        ],
    }
    assert base64.b64decode(signature)  # a real base64 signature went back as it came
    assert contents[2] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": calls[0].id,
                    "name": "get_weather",
                    "response": {"temp_c": 21},
                }
            },
            {
                "functionResponse": {
                    "id": calls[1].id,
                    "name": "get_time",
                    "response": {"output": "14:05"},
                }
            },
        ],
    }


async def test_error_inside_200_stream_raises_after_partial_text() -> None:
    p, replayer = provider("midstream_error", max_retries=2)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in p.stream(HELLO):
            seen.append(event)
    assert text_of(seen) == "The answer is"
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert info.value.retryable
    assert len(replayer.requests) == 1  # never retried after the first token


@pytest.mark.parametrize("name", ["401", "api_key_invalid"])
async def test_bad_credentials_are_provider_auth(name: str) -> None:
    p, _ = provider(name)
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    assert not info.value.retryable
    assert "GEMINI_API_KEY" in info.value.details["operator"]  # not shown to end users


async def test_429_is_rate_limit_with_retry_delay() -> None:
    p, _ = provider("429")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_RATE_LIMIT
    assert info.value.retryable
    assert info.value.retry_after_s == 37.0


async def test_429_is_retried_by_the_sdk_before_the_stream_starts() -> None:
    p, replayer = provider("429", "text", max_retries=1)
    assert text_of(await collect(p.stream(HELLO))) == "Hello! 안녕하세요."
    assert len(replayer.requests) == 2


async def test_input_too_long_is_context_too_long() -> None:
    p, _ = provider("context_length")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.CONTEXT_TOO_LONG


async def test_malformed_function_call_is_an_error() -> None:
    p, _ = provider("malformed_function_call")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_ERROR
    assert "MALFORMED_FUNCTION_CALL" in info.value.message


async def test_blocked_prompt_finishes_with_content_filter() -> None:
    p, _ = provider("prompt_blocked")
    events = await collect(p.stream(HELLO))
    assert events == [Usage(prompt_tokens=12, completion_tokens=0), Finish("content_filter")]


async def test_stream_without_finish_reason_is_an_error() -> None:
    p, _ = provider("truncated")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE


async def test_connection_refused_is_unavailable() -> None:
    p = GeminiProvider(api_key="AIza-test", base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    await p.aclose()


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "TOKENRELAY_GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProviderError) as info:
        GeminiProvider.from_settings(Settings())
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    operator = info.value.details["operator"]  # the start-up log has it
    assert "GEMINI_API_KEY" in operator and "GOOGLE_API_KEY" in operator


async def test_google_api_key_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-env")
    p = GeminiProvider.from_settings(Settings(gemini_model="gemini-2.5-flash-lite"))
    assert p.default_model == "gemini-2.5-flash-lite"
    assert p._client._api_client.api_key == "AIza-env"
    await p.aclose()


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_early_closes_the_upstream_connection(how: str) -> None:
    async with WireServer(lambda _: Reply(load("gemini", "text"), hold_after=1)) as server:
        p = GeminiProvider(api_key="AIza-test", base_url=server.url, max_retries=0)
        stream = p.stream(HELLO)
        first = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                if isinstance(event, TextDelta):
                    first.set()

        if how == "cancel":
            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), timeout=30)
            assert not server.closed_while_held.is_set()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            assert isinstance(await anext(stream), TextDelta)
            assert not server.closed_while_held.is_set()
            await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(server.closed_while_held.wait(), timeout=30)
        await p.aclose()


async def test_sampling_parameters_pass_through() -> None:
    p, replayer = provider("text")
    request = replace(
        HELLO, top_p=0.5, stop=("END",), seed=42, frequency_penalty=0.25, presence_penalty=0.5
    )
    await collect(p.stream(request))
    config = replayer.requests[0].json["generationConfig"]
    assert (config["topP"], config["stopSequences"], config["seed"]) == (0.5, ["END"], 42)
    assert (config["frequencyPenalty"], config["presencePenalty"]) == (0.25, 0.5)
