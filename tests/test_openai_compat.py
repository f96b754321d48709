"""The OpenAI-compatible API with the official `openai` SDK (async) against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import StreamResult, parse_frames, stream

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def v1_stream(url: str, content: str, scripted: dict[str, Any]) -> StreamResult:
    """A raw `/v1` stream of one user message, answered by the scripted provider."""
    return await stream(
        url,
        "POST",
        "/v1/chat/completions",
        json={
            "model": "scripted",
            "stream": True,
            "messages": [{"role": "user", "content": content}],
            "tokenrelay": {"scripted": scripted},
        },
    )


async def test_non_streaming_completion(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        completion = await client.chat.completions.create(
            model="scripted",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "경복궁은 어디에 있나요?"},
            ],
        )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "scripted-1"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert (
        choice.message.content == "This is tokenrelay's scripted answer to: 경복궁은 어디에 있나요?"
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_streaming_with_usage(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"tokenrelay": {"scripted": {"reply": "one two three", "tokens": 3}}},
            )
        ]
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_wire_ends_with_done_and_keeps_korean(live_server) -> None:
    async with live_server() as srv:
        result = await v1_stream(srv.url, "안녕", {"reply": "안녕하세요"})
    assert result.response.headers["content-type"].startswith("text/event-stream")
    assert result.response.headers["x-trace-id"]
    data = [f.data for f in result.frames if f.data is not None]
    assert data[-1] == "[DONE]"
    assert all(f.event is None and f.id is None for f in result.frames)
    assert "안녕하세요" in result.raw  # not \uXXXX escapes
    assert json.loads(data[0])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "usage" not in json.loads(data[1])  # only with stream_options.include_usage


async def test_a_paced_stream_arrives_whole_and_in_order(live_server) -> None:
    """Paced tokens reach a waiting reader by push (under uvicorn, server/sse.py's `_Pusher`),
    formatted by the OpenAI framer: every piece arrives once, in order, then `[DONE]`."""
    async with live_server() as srv:
        result = await v1_stream(srv.url, "x", {"reply": "가 나 다 라 마 바 사 아", "delay_ms": 5})
    data = [f.data for f in result.frames if f.data is not None]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert deltas[0] == "" and "".join(d or "" for d in deltas) == "가 나 다 라 마 바 사 아"
    assert len(deltas) == 1 + 8 + 1  # the role chunk, one chunk per word, the finish chunk
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_tools_round_trip(live_server) -> None:
    scripted = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Seoul"}}]}
    scripted_reply = {**scripted, "reply": "It is sunny in Seoul."}
    messages: list[Any] = [{"role": "user", "content": "Weather in Seoul?"}]
    async with live_server() as srv, sdk(srv.url) as client:
        stream_ = await client.chat.completions.create(
            model="scripted",
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            stream=True,
            extra_body={"tokenrelay": {"scripted": scripted}},
        )
        chunks = [c async for c in stream_]
        deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
        assert len(deltas) == 1
        call = deltas[0]
        assert call.index == 0 and call.id == "call_0" and call.type == "function"
        assert call.function is not None and call.function.name == "get_weather"
        assert json.loads(call.function.arguments or "") == {"city": "Seoul"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        first = await client.chat.completions.create(
            model="scripted",
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            extra_body={"tokenrelay": {"scripted": scripted}},
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.content is None and message.tool_calls is not None
        tool_call = message.tool_calls[0]
        messages += [
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tool_call.id, "content": '{"sky": "sunny"}'},
        ]
        final = await client.chat.completions.create(
            model="scripted",
            messages=messages,
            tools=[WEATHER_TOOL],
            extra_body={"tokenrelay": {"scripted": scripted_reply}},
        )
        provider = srv.app.state.services.providers.get("scripted")
    assert final.choices[0].message.content == "It is sunny in Seoul."
    assert final.choices[0].finish_reason == "stop"
    sent = provider.last_request
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[1].tool_calls[0].arguments == {"city": "Seoul"}
    assert sent.messages[2].tool_call_id == tool_call.id
    assert [t.name for t in sent.tools] == ["get_weather"]


async def test_parameters_reach_the_provider(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        completion = await client.chat.completions.create(
            model="scripted/scripted-1",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "part one, "}]},
            ],
            temperature=0.3,
            max_tokens=2,
            user="someone",  # accepted and ignored, as OpenAI-only fields are
        )
        sent = srv.app.state.services.providers.get("scripted").last_request
    assert completion.choices[0].finish_reason == "length"
    assert sent.temperature == 0.3 and sent.max_tokens == 2 and sent.model == "scripted-1"
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."),
        ("user", "part one, "),
    ]


async def test_models_list_what_can_answer_now(live_server, tmp_path) -> None:
    """Providers without their key or model file are not listed (issue #22)."""
    async with (
        live_server(local_model_path=tmp_path / "missing.gguf") as srv,
        sdk(srv.url) as client,
    ):
        models = [m.id async for m in client.models.list()]
        one = await client.models.retrieve("scripted/scripted-1")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("gpt-nonexistent")
    assert models == ["scripted", "scripted/scripted-1", "scripted-1"]
    assert one.id == "scripted/scripted-1" and one.object == "model"
    assert missing.value.code == "model_not_found"


async def test_unknown_models_are_404_model_not_found(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        for model in ("gpt-nonexistent", "local/nonexistent-model", "nonexistent"):
            with pytest.raises(openai.NotFoundError) as chat:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.NotFoundError) as responses:
                await client.responses.create(model=model, input="hi", stream=True)
            for caught in (chat, responses):
                assert caught.value.code == "model_not_found"
                assert caught.value.param == "model"
                assert caught.value.type == "invalid_request_error"


async def test_stop_and_sampling_parameters_reach_the_provider(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        completion = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "hi"}],
            stop=["three", "four"],
            seed=7,
            top_p=0.5,
            frequency_penalty=0.1,
            presence_penalty=0.2,
            extra_body={"tokenrelay": {"scripted": {"reply": "one two three four"}}},
        )
        sent = srv.app.state.services.providers.get("scripted").last_request
    assert completion.choices[0].message.content == "one two "
    assert sent.stop == ("three", "four") and sent.seed == 7 and sent.top_p == 0.5
    assert (sent.frequency_penalty, sent.presence_penalty) == (0.1, 0.2)


async def test_parameters_a_provider_lacks_are_400s_naming_them(live_server) -> None:
    async with (
        live_server(anthropic_api_key="sk-ant-test-key-not-used") as srv,
        sdk(srv.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as seed:
            await client.chat.completions.create(
                model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], seed=1
            )
        with pytest.raises(openai.BadRequestError) as options:
            await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "hi"}],
                stream_options={"include_usage": True},
            )
        with pytest.raises(openai.BadRequestError) as logprobs:
            await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}], logprobs=True
            )
        with pytest.raises(openai.BadRequestError) as stops:
            await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}], stop=[""]
            )
    assert seed.value.param == "seed" and "anthropic" in seed.value.message
    assert options.value.param == "stream_options"
    assert logprobs.value.param == "logprobs"
    assert stops.value.param == "stop"


async def test_401_and_unknown_urls_in_openai_shape(live_server) -> None:
    async with live_server(api_keys="alice:" + "a" * 32) as srv:
        async with sdk(srv.url, key="wrong-key-wrong-key") as client:
            with pytest.raises(openai.AuthenticationError) as denied:
                await client.responses.create(model="scripted", input="hi")
        async with sdk(srv.url, key="a" * 32) as client:
            with pytest.raises(openai.NotFoundError) as unknown:
                await client.post("/nothing/here", cast_to=httpx.Response)
    assert denied.value.type == "authentication_error"
    assert unknown.value.body == {  # type: ignore[comparison-overlap]
        "message": "Invalid URL (POST /v1/nothing/here)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_errors_before_the_stream_are_sdk_exceptions(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        with pytest.raises(openai.BadRequestError) as empty:
            await client.chat.completions.create(model="scripted", messages=[])
        with pytest.raises(openai.BadRequestError) as role:
            await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item,misc]
            )
        with pytest.raises(openai.BadRequestError) as image:
            await client.chat.completions.create(
                model="scripted",
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ],
            )
    for exc in (empty, role, image):
        body = exc.value.body
        assert isinstance(body, dict)
        assert body["type"] == "invalid_request_error"
        assert body["code"] == "VALIDATION_ERROR"
        assert body["suggestion"]
    assert empty.value.param == "messages"  # type: ignore[attr-defined]
    assert role.value.body["param"] == "messages.0.role"  # type: ignore[index]
    assert image.value.body["param"] == "messages.0.content"  # type: ignore[index]


async def test_errors_use_openai_shape_but_native_routes_keep_theirs(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as http:
        bad_json = await http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        native = await http.post("/api/chat", json={"message": ""})
    assert bad_json.status_code == 400
    error = bad_json.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == "VALIDATION_ERROR" and error["message"]
    assert native.status_code == 422
    assert native.json()["code"] == "VALIDATION_ERROR" and "error" not in native.json()


async def test_error_after_stream_started_raises_api_error(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        stream_ = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            extra_body={
                "tokenrelay": {"scripted": {"error_after": 2, "error_code": "PROVIDER_UNAVAILABLE"}}
            },
        )
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream_:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "This is "
    assert caught.value.body == {
        "message": "scripted failure after 2 pieces",
        "type": "server_error",
        "param": None,
        "code": "PROVIDER_UNAVAILABLE",
        "suggestion": "this failure was asked for by options.scripted.error_after",
    }


async def test_error_frame_is_followed_by_done(live_server) -> None:
    async with live_server() as srv:
        result = await v1_stream(srv.url, "x", {"reply": "a b", "error_after": 1})
    data = [f.data for f in parse_frames(result.raw) if f.data is not None]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["code"] == "PROVIDER_ERROR"


async def test_non_stream_error_has_the_status_of_its_code(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "x"}],
                extra_body={
                    "tokenrelay": {
                        "scripted": {"error_after": 1, "error_code": "PROVIDER_UNAVAILABLE"}
                    }
                },
            )
    assert caught.value.status_code == 503
    assert caught.value.code == "PROVIDER_UNAVAILABLE"


async def test_client_leaving_a_stream_cancels_generation(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        provider = srv.app.state.services.providers.get("scripted")
        stream_ = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_body={"tokenrelay": {"scripted": {"stall_after": 1}}},
        )
        async for chunk in stream_:
            if chunk.choices[0].delta.content:
                break
        await stream_.close()
        runner = srv.app.state.services.runner
        while runner.active:
            await asyncio.sleep(0.01)
    assert provider.stats.cancelled == 1


async def test_rate_limit_is_the_sdks_rate_limit_error(live_server) -> None:
    async with (
        live_server(rate_limit_per_minute=1, rate_limit_burst=1) as srv,
        sdk(srv.url) as client,
    ):
        await client.responses.create(model="scripted", input="one")
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="scripted", input="two")
    assert limited.value.code == "RATE_LIMIT" and limited.value.type == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_a_refused_provider_key_is_an_authentication_error(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        with pytest.raises(openai.AuthenticationError) as chat:
            await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={
                    "tokenrelay": {"scripted": {"error_after": 0, "error_code": "PROVIDER_AUTH"}}
                },
            )
    assert chat.value.code == "PROVIDER_AUTH" and chat.value.status_code == 401
