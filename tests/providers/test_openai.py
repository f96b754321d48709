"""OpenAI adapter: raw Chat Completions SSE transcripts through MockTransport into the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
    ToolCall,
    ToolCallPart,
    ToolSpec,
    Usage,
)
from tokenrelay.providers.openai import PLACEHOLDER_KEY, OpenAIProvider

HELLO = ProviderRequest(messages=(ChatMessage("user", "Say hello"),))
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(*names: str, max_retries: int = 0, **kw: object) -> tuple[OpenAIProvider, Replayer]:
    client, replayer = mock_client(*(load("openai", n) for n in names))
    p = OpenAIProvider(
        api_key="sk-test",
        max_retries=max_retries,
        http_client=client,
        **kw,  # type: ignore[arg-type]
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
    assert events[-2:] == [Usage(prompt_tokens=19, completion_tokens=5), Finish("stop")]
    sent = replayer.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]


async def test_request_model_and_options_pass_through() -> None:
    p, replayer = provider("text")
    request = ProviderRequest(
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "hi")),
        model="gpt-4.1-nano",
        temperature=0.2,
        max_tokens=64,
        tools=(WEATHER,),
        tool_choice="get_weather",
        response_format={"type": "json_object"},
    )
    await collect(p.stream(request))
    body = replayer.requests[0].json
    assert body["model"] == "gpt-4.1-nano"
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 64
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": WEATHER.parameters}}]  # fmt: skip
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_object"}


async def test_tool_call_pieces_are_assembled() -> None:
    p, _ = provider("tool_call")
    events = await collect(p.stream(ProviderRequest(messages=HELLO.messages, tools=(WEATHER,))))
    assert events == [
        ToolCallPart(ToolCall("call_Xq2bV7tL9mN4pR8sK1wY3zA6", "get_weather",
                              {"city": "Seoul", "unit": "c"})),
        ToolCallPart(ToolCall("call_Pz4cW8uM0nO5qS9tL2xZ4aB7", "get_time", {"tz": "Asia/Seoul"})),
        Usage(prompt_tokens=86, completion_tokens=41),
        Finish("tool_calls"),
    ]  # fmt: skip


async def test_tool_round_trip_messages_are_converted() -> None:
    p, replayer = provider("text")
    call = ToolCall("call_1", "get_weather", {"city": "Seoul"})
    history = (
        ChatMessage("user", "Weather in Seoul?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id="call_1", name="get_weather"),
    )
    await collect(p.stream(ProviderRequest(messages=history, tools=(WEATHER,))))
    assert replayer.requests[0].json["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Seoul"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]  # fmt: skip


async def test_ollama_tool_call_with_finish_stop_reports_tool_calls() -> None:
    p, _ = provider("ollama_tool_call", base_url="http://127.0.0.1:11434/v1")
    events = await collect(p.stream(HELLO))
    assert events == [
        ToolCallPart(ToolCall("call_lzb5h1kq", "get_weather", {"city": "Seoul"})),
        Usage(prompt_tokens=152, completion_tokens=18),
        Finish("tool_calls"),
    ]


async def test_vllm_length_finish_and_max_tokens_field() -> None:
    p, replayer = provider("vllm_length", base_url="http://127.0.0.1:8001/v1")
    events = await collect(p.stream(ProviderRequest(messages=HELLO.messages, max_tokens=5)))
    assert text_of(events) == "Paris is the capital."
    assert events[-2:] == [Usage(prompt_tokens=31, completion_tokens=5), Finish("length")]
    body = replayer.requests[0].json
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body


@pytest.mark.parametrize("name", ["midstream_error", "vllm_midstream_error"])
async def test_error_inside_200_stream_raises_after_partial_text(name: str) -> None:
    p, replayer = provider(name, max_retries=2)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in p.stream(HELLO):
            seen.append(event)
    assert text_of(seen) in ("The answer is", "Paris is the")
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert info.value.retryable
    assert len(replayer.requests) == 1  # never retried mid-stream


async def test_401_is_provider_auth_with_the_fix() -> None:
    p, _ = provider("401")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    assert not info.value.retryable
    assert "Incorrect API key" in info.value.message
    assert "OPENAI_API_KEY" in info.value.details["operator"]  # not shown to end users


async def test_429_is_rate_limit_with_retry_after() -> None:
    p, _ = provider("429")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_RATE_LIMIT
    assert info.value.retryable
    assert info.value.retry_after_s == 7.0


async def test_429_is_retried_by_the_sdk_before_the_stream_starts() -> None:
    client, replayer = mock_client(
        load("openai", "429").with_headers(retry_after_ms="1"), load("openai", "text")
    )
    p = OpenAIProvider(api_key="sk-test", max_retries=1, http_client=client)
    events = await collect(p.stream(HELLO))
    assert text_of(events) == "Hello! 안녕하세요."
    assert len(replayer.requests) == 2


async def test_context_length_exceeded() -> None:
    p, _ = provider("context_length")
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.CONTEXT_TOO_LONG


async def test_stream_cut_before_finish_is_an_error_not_a_short_success() -> None:
    p, _ = provider("truncated")
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in p.stream(HELLO):
            seen.append(event)
    assert text_of(seen) == "Paris is"
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE


async def test_connection_refused_is_unavailable() -> None:
    p = OpenAIProvider(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(ProviderError) as info:
        await collect(p.stream(HELLO))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    await p.aclose()


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TOKENRELAY_OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError) as info:
        OpenAIProvider.from_settings(Settings())
    assert info.value.code is ErrorCode.PROVIDER_AUTH
    assert "OPENAI_API_KEY" in info.value.details["operator"]  # the start-up log has it
    assert "--provider local" in info.value.details["operator"]


async def test_compatible_server_without_key_uses_a_placeholder() -> None:
    client, replayer = mock_client(load("openai", "vllm_length"))
    p = OpenAIProvider(api_key=None, base_url="http://127.0.0.1:8001/v1", http_client=client)
    await collect(p.stream(HELLO))
    assert replayer.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("TOKENRELAY_OPENAI_MODEL", "gpt-4.1-mini")
    p = OpenAIProvider.from_settings(Settings(provider_max_retries=5, provider_timeout_s=9))
    assert p.default_model == "gpt-4.1-mini"
    assert p._client.api_key == "sk-from-env"
    assert p._client.max_retries == 5
    assert p._client.timeout == 9


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_early_closes_the_upstream_connection(how: str) -> None:
    """Cancelling the consumer, or closing the generator, closes the upstream response at once."""
    async with WireServer(lambda _: Reply(load("openai", "text"), hold_after=3)) as server:
        p = OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1", max_retries=0)
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


async def test_sampling_parameters_pass_through() -> None:
    p, replayer = provider("text")
    request = ProviderRequest(
        messages=HELLO.messages,
        top_p=0.5,
        stop=("END", "\n\n"),
        seed=42,
        frequency_penalty=0.25,
        presence_penalty=-0.5,
    )
    await collect(p.stream(request))
    body = replayer.requests[0].json
    assert (body["top_p"], body["stop"], body["seed"]) == (0.5, ["END", "\n\n"], 42)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.25, -0.5)
