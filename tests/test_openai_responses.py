"""The Responses API with the official `openai` SDK (async) against a real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import parse_frames

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALLS = [{"name": "get_weather", "arguments": {"city": "Seoul"}}]
ASK_WEATHER = {"tokenrelay": {"scripted": {"tool_calls": CALLS}}}


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def scripted(**options: Any) -> dict[str, Any]:
    return {"tokenrelay": {"scripted": options}}


def sent_request(srv: Any) -> Any:
    return srv.app.state.services.providers.get("scripted").last_request


async def test_create_answers_with_output_text_usage_and_the_model(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        response = await client.responses.create(
            model="scripted",
            instructions="Be brief.",
            input="경복궁은 어디에 있나요?",
            temperature=0.5,
            top_p=0.9,
            max_output_tokens=100,
        )
        sent = sent_request(srv)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "scripted-1"
    assert (
        response.output_text == "This is tokenrelay's scripted answer to: 경복궁은 어디에 있나요?"
    )
    assert response.usage is not None
    assert response.usage.output_tokens == len(response.output_text.split())
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions == "Be brief." and response.temperature == 0.5
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."),
        ("user", "경복궁은 어디에 있나요?"),
    ]
    assert (sent.temperature, sent.top_p, sent.max_tokens) == (0.5, 0.9, 100)


async def test_stream_sends_the_event_sequence_with_sequence_numbers(live_server) -> None:
    async with (
        live_server() as srv,
        sdk(srv.url) as client,
        client.responses.stream(
            model="scripted",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            extra_body=scripted(reply="one two three", tokens=3),
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_response()
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "one two three" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 3
    assert final.id == events[0].response.id  # type: ignore[union-attr]


async def test_raw_stream_has_event_lines_and_no_done_marker(live_server) -> None:
    body = {"model": "scripted", "input": "안녕", "stream": True, **scripted(reply="안녕하세요")}
    async with live_server() as srv, httpx.AsyncClient() as client:
        response = await client.post(f"{srv.url}/v1/responses", json=body)
    frames = parse_frames(response.text)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(f.event == json.loads(f.data)["type"] for f in frames if f.data)
    assert "[DONE]" not in response.text and "안녕하세요" in response.text


async def test_function_tool_over_two_turns_with_full_input(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        first = await client.responses.create(
            model="scripted", input="weather in Seoul?", tools=[WEATHER], extra_body=ASK_WEATHER
        )
        call = first.output[0]
        assert call.type == "function_call"
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Seoul"}
        second = await client.responses.create(
            model="scripted",
            input=[
                {"role": "user", "content": "weather in Seoul?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=[WEATHER],
            extra_body=scripted(tool_calls=CALLS, reply="Sunny."),
        )
        sent = sent_request(srv)
    assert second.output_text == "Sunny."
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[1].tool_calls[0].arguments == {"city": "Seoul"}
    assert sent.messages[2].tool_call_id == call.call_id and sent.messages[2].content == "sunny"
    assert [t.name for t in sent.tools] == ["get_weather"]


async def test_streamed_function_call_events(live_server) -> None:
    async with (
        live_server() as srv,
        sdk(srv.url) as client,
        client.responses.stream(
            model="scripted", input="weather?", tools=[WEATHER], extra_body=ASK_WEATHER
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_response()
    types = [e.type for e in events]
    assert types[2:6] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "Seoul"}


async def test_store_previous_response_id_and_get(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        first = await client.responses.create(
            model="scripted", input="My name is Mina.", extra_body=scripted(reply="Hello Mina.")
        )
        fetched = await client.responses.retrieve(first.id)
        second = await client.responses.create(
            model="scripted",
            input="What is my name?",
            previous_response_id=first.id,
            extra_body=scripted(reply="Mina."),
        )
        sent = sent_request(srv)
        third = await client.responses.create(
            model="scripted", input="And again?", previous_response_id=second.id
        )
        sent_third = sent_request(srv)
        with pytest.raises(openai.BadRequestError) as stale:
            await client.responses.create(
                model="scripted", input="x", previous_response_id=first.id
            )
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve("resp_" + "0" * 64)
    assert fetched.id == first.id and fetched.output_text == "Hello Mina."
    assert fetched.status == "completed" and fetched.model == "scripted-1"
    assert second.output_text == "Mina."
    assert [(m.role, m.content) for m in sent.messages] == [
        ("user", "My name is Mina."),
        ("assistant", "Hello Mina."),
        ("user", "What is my name?"),
    ]
    assert [m.content for m in sent_third.messages][-2:] == ["Mina.", "And again?"]
    assert third.status == "completed"
    assert stale.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_unstored_response_is_not_found_later(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        response = await client.responses.create(model="scripted", input="x", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)


async def test_item_references_to_stored_items(live_server) -> None:
    """The AI SDK sends its earlier output as `item_reference`s when `store` is on."""
    async with live_server() as srv, sdk(srv.url) as client:
        first = await client.responses.create(
            model="scripted", input="weather?", tools=[WEATHER], extra_body=ASK_WEATHER
        )
        call = first.output[0]
        assert call.type == "function_call" and call.id
        await client.responses.create(
            model="scripted",
            input=[
                {"role": "user", "content": "weather?"},
                {"type": "item_reference", "id": call.id},
                {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
            ],
            tools=[WEATHER],
            extra_body=ASK_WEATHER,
        )
        sent = sent_request(srv)
    assert sent.messages[1].tool_calls[0].id == call.call_id
    assert sent.messages[2].content == "rain"


async def test_json_schema_text_format_reaches_the_provider(live_server) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    async with live_server() as srv, sdk(srv.url) as client:
        await client.responses.create(
            model="scripted",
            input="x",
            text={"format": {"type": "json_schema", "name": "thing", "schema": schema}},
            extra_body=scripted(reply='{"a": 1}'),
        )
        sent = sent_request(srv)
    assert sent.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema},
    }


async def test_max_output_tokens_makes_an_incomplete_response(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        response = await client.responses.create(
            model="scripted", input="x", max_output_tokens=2, extra_body=scripted(tokens=5)
        )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


async def test_error_after_the_start_is_response_failed(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        stream = await client.responses.create(
            model="scripted",
            input="x",
            stream=True,
            extra_body=scripted(error_after=1, error_code="PROVIDER_UNAVAILABLE"),
        )
        events = [event async for event in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert events[-1].response.error.code == "PROVIDER_UNAVAILABLE"  # type: ignore[comparison-overlap]
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_non_stream_error_has_the_status_of_its_code(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.responses.create(
                model="scripted",
                input="x",
                extra_body=scripted(error_after=0, error_code="PROVIDER_UNAVAILABLE"),
            )
    assert caught.value.status_code == 503


async def test_requests_we_cannot_honour_are_400s_naming_the_parameter(live_server) -> None:
    async with live_server() as srv, sdk(srv.url) as client:
        with pytest.raises(openai.BadRequestError) as tool:
            await client.responses.create(
                model="scripted", input="x", tools=[{"type": "web_search"}]
            )
        with pytest.raises(openai.BadRequestError) as background:
            await client.responses.create(model="scripted", input="x", background=True)
        with pytest.raises(openai.BadRequestError) as options:
            await client.responses.create(
                model="scripted", input="x", extra_body={"stream_options": {}}
            )
    assert tool.value.body["param"] == "tools.0.type"  # type: ignore[index]
    assert background.value.body["param"] == "background"  # type: ignore[index]
    assert options.value.body["param"] == "stream_options"  # type: ignore[index]


@pytest.mark.model
async def test_local_model_streams_a_response_and_honours_stop(live_server) -> None:
    async with (
        live_server(provider="local", local_n_ctx=1024, local_weights="original") as srv,
        sdk(srv.url) as client,
    ):
        async with client.responses.stream(
            model="local", input="Say hello.", max_output_tokens=12, temperature=0
        ) as stream:
            events = [event async for event in stream]
        plain = await client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "Count from one to ten."}],
            max_tokens=16,
            temperature=0,
        )
        text = plain.choices[0].message.content or ""
        stop = text[4:9]
        stopped = await client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "Count from one to ten."}],
            max_tokens=16,
            temperature=0,
            stop=stop,
        )
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete")  # at max_output_tokens
    final = last.response
    assert events[0].type == "response.created" and final.model == "SmolLM2-135M-Instruct"
    assert final.output_text.strip() and final.status in ("completed", "incomplete")
    assert final.usage is not None and final.usage.input_tokens > 10
    assert stopped.choices[0].message.content == text[: text.find(stop)]
    assert stopped.choices[0].finish_reason == "stop"
