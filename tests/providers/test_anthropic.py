"""Anthropic adapter: raw Messages SSE transcripts through MockTransport into the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.providers.remote_wire import Replayer, Reply, WireServer, load, mock_client2
from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers.anthropic import AnthropicProvider
from tokenrelay.providers.base import (
    ChatMessage,
    Finish,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallPart,
    ToolSpec,
    Usage,
)

HELLO = ProviderRequest(messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")))
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(*names: str, max_retries: int = 0) -> tuple[AnthropicProvider, Replayer]:
    client, replayer = mock_client2(*(load("anthropic", n) for n in names))
    p = AnthropicProvider(api_key="sk-ant-test", max_retries=max_retries, http_client=client)
    return p, replayer


async def collect(stream: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in stream]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_text_ping_usage_and_finish() -> None:
    p, replayer = provider("text")
    events = await collect(p.stream(HELLO))
    assert text_of(events) == "Hello! 안녕하세요."
    assert events[-2:] == [Usage(prompt_tokens=21, completion_tokens=12), Finish("stop")]
    sent = replayer.requests[0]
    assert sent.path == "/v1/messages"
    body = sent.json
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-6"
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["max_tokens"] == 1024


async def test_request_options_pass_through() -> None:
    p, replayer = provider("text")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = ProviderRequest(
        messages=HELLO.messages,
        model="claude-haiku-4-5",
        max_tokens=50,
        tools=(WEATHER,),
        tool_choice="required",
        response_format=schema,
    )
    await collect(p.stream(request))
    body = replayer.requests[0].json
    assert body["model"] == "claude-haiku-4-5"
    assert body["max_tokens"] == 50
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": WEATHER.description,
            "input_schema": WEATHER.parameters,
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_tool_use_block_is_assembled() -> None:
    p, _ = provider("tool_call")
    events = await collect(p.stream(ProviderRequest(messages=HELLO.messages, tools=(WEATHER,))))
    assert events == [
        TextDelta("Let me check the weather in Seoul."),
        ToolCallPart(
            ToolCall(
                "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"city": "Seoul", "unit": "c"}
            )
        ),
        Usage(prompt_tokens=472, completion_tokens=89),
        Finish("tool_calls"),
    ]


async def test_tool_round_trip_messages_are_converted() -> None:
    p, replayer = provider("text")
    call = ToolCall("toolu_1", "get_weather", {"city": "Seoul"})
    other = ToolCall("toolu_2", "get_weather", {"city": "Busan"})
    history = (
        ChatMessage("user", "Weather in Seoul and Busan?"),
        ChatMessage("assistant", "Checking.", tool_calls=(call, other)),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id="toolu_1"),
        ChatMessage("tool", '{"temp_c": 24}', tool_call_id="toolu_2"),
    )
    await collect(p.stream(ProviderRequest(messages=history, tools=(WEATHER,))))
    assert replayer.requests[0].json["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Seoul"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Busan"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 21}'},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"temp_c": 24}'},
            ],
        },
    ]


async def test_overloaded_error_event_inside_200_stream_raises() -> None:
    p, replayer = provider("midstream_error", max_retries=2)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in p.stream(HELLO):
            seen.append(event)
    assert text_of(seen) == "The answer is"
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert info.value.retryable
    assert "overloaded_error" in info.value.message
    assert len(replayer.requests) == 1  # never retried after the first token


async def test_401_is_provider_auth() -> None:
    p, _ = provider("401")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    assert "invalid x-api-key" in info.value.message
    assert "ANTHROPIC_API_KEY" in info.value.details["operator"]  # not shown to end users


async def test_429_is_rate_limit_with_retry_after() -> None:
    p, _ = provider("429")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_RATE_LIMIT
    assert info.value.retryable
    assert info.value.retry_after_s == 13.0


async def test_529_overloaded_is_unavailable_and_retried_before_the_stream() -> None:
    client, replayer = mock_client2(
        load("anthropic", "529").with_headers(retry_after_ms="1"), load("anthropic", "text")
    )
    p = AnthropicProvider(api_key="sk-ant-test", max_retries=1, http_client=client)
    assert text_of(await collect(p.stream(HELLO))) == "Hello! 안녕하세요."
    assert len(replayer.requests) == 2

    p, _ = provider("529")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE


async def test_prompt_too_long_is_context_too_long() -> None:
    p, _ = provider("context_length")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.CONTEXT_TOO_LONG


async def test_stream_without_message_stop_is_an_error() -> None:
    p, _ = provider("truncated")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("TOKENRELAY_ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderError) as info:
        AnthropicProvider.from_settings(Settings())
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    assert "ANTHROPIC_API_KEY" in info.value.details["operator"]  # the start-up log has it


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    p = AnthropicProvider.from_settings(Settings(anthropic_model="claude-opus-4-1", max_tokens=99))
    assert p.default_model == "claude-opus-4-1"
    assert p._client.api_key == "sk-ant-env"
    assert p.request_params(HELLO)["max_tokens"] == 99


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_early_closes_the_upstream_connection(how: str) -> None:
    """Cancelling the consumer, or closing the generator, closes the upstream response at once."""
    async with WireServer(lambda _: Reply(load("anthropic", "text"), hold_after=4)) as server:
        p = AnthropicProvider(api_key="sk-ant-test", base_url=server.url, max_retries=0)
        stream = p.stream(HELLO)
        first = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                if isinstance(event, TextDelta):
                    first.set()

        if how == "cancel":
            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), timeout=30)
            await asyncio.wait_for(server.held.wait(), timeout=30)
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


async def test_stop_sequences_pass_through() -> None:
    p, replayer = provider("text")
    await collect(p.stream(replace(HELLO, stop=("END",))))
    body = replayer.requests[0].json
    assert body["stop_sequences"] == ["END"]
    assert p.sampling == {"stop"}  # the others are refused by the API before a stream
