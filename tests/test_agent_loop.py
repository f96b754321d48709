"""The agent loop over real HTTP with the scripted provider and real tools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import chat_stream, parse_frames, stream
from tests.tools import sample_tools
from tests.tools.conftest import FakeOpenMeteo, serve_open_meteo
from tokenrelay.providers.scripted import ScriptedProvider

SAMPLES = ["tests.tools.sample_tools"]


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with serve_open_meteo() as fake:
        yield fake


def scripted(srv: Any) -> ScriptedProvider:
    provider: ScriptedProvider = srv.app.state.services.providers.get("scripted")
    return provider


def ask(
    message: str, calls: list[dict[str, Any]], reply: str = "Done.", **opts: Any
) -> dict[str, Any]:
    return {
        "message": message,
        "options": {"scripted": {"tool_calls": calls, "reply": reply}, **opts},
    }


async def test_tool_call_progress_result_then_the_answer(
    live_server: Any, open_meteo: FakeOpenMeteo
) -> None:
    body = ask(
        "What is the weather in Paris?",
        [{"name": "get_weather", "arguments": {"location": "Paris", "days": 1}}],
        reply="It is 21 degrees and partly cloudy in Paris.",
    )
    async with live_server(
        weather_base_url=open_meteo.url, geocoding_base_url=open_meteo.url
    ) as srv:
        result = await chat_stream(srv.url, body)
        second = scripted(srv).last_request
    types = result.types
    assert types[:5] == ["metadata", "tool_call", "tool_progress", "tool_progress", "tool_result"]
    assert set(types[5:-1]) == {"token"} and types[-1] == "done"
    call, progress, _, tool_result = (f.json for f in result.events[1:5])
    assert call == {
        "type": "tool_call",
        "call_id": "call_0",
        "tool": "get_weather",
        "args": {"location": "Paris", "days": 1},
    }
    assert progress["message"] == "Looking up Paris" and progress["call_id"] == "call_0"
    assert tool_result["error"] is None
    assert tool_result["result"]["current"]["temperature_c"] == 21.4
    assert result.text == "It is 21 degrees and partly cloudy in Paris."
    done = result.last()
    assert done["finish_reason"] == "stop"
    assert done["history_length"] == 4  # user, assistant (calls), tool, assistant
    # the model got the tool result back and was offered the tools
    assert second is not None
    assert "get_weather" in [t.name for t in second.tools]
    assistant, tool_message = second.messages[-2:]
    assert assistant.role == "assistant" and assistant.tool_calls[0].name == "get_weather"
    assert tool_message.role == "tool" and tool_message.tool_call_id == "call_0"
    assert '"temperature_c": 21.4' in tool_message.content


async def test_weather_unreachable_is_a_tool_error_and_the_answer_goes_on(
    live_server: Any,
) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    body = ask("Weather in Paris?", [{"name": "get_weather", "arguments": {"location": "Paris"}}])
    async with live_server(weather_base_url=dead, geocoding_base_url=dead) as srv:
        result = await chat_stream(srv.url, body)
    tool_result = next(f.json for f in result.events if f.type == "tool_result")
    assert tool_result["result"] is None and "cannot be reached" in tool_result["error"]
    assert result.text == "Done." and result.types[-1] == "done"


async def test_several_calls_in_one_turn_run_concurrently(live_server: Any) -> None:
    # `meet` returns only once both calls are running: one after another, both would time out
    calls = [
        {"name": "meet", "arguments": {"group": "concurrent-1", "parties": 2}},
        {"name": "meet", "arguments": {"group": "concurrent-1", "parties": 2}},
    ]
    async with live_server(tool_modules=SAMPLES, tool_timeout_s=20) as srv:
        result = await chat_stream(srv.url, ask("meet", calls))
    results = [f.json for f in result.events if f.type == "tool_result"]
    assert sorted(r["call_id"] for r in results) == ["call_0", "call_1"]
    assert all(r["error"] is None and r["result"]["met"] == 2 for r in results)
    assert result.types.count("tool_progress") == 2
    assert result.types[-1] == "done"


async def test_a_tool_that_raises_hangs_or_returns_junk_never_kills_the_stream(
    live_server: Any,
) -> None:
    calls = [
        {"name": "boom", "arguments": {"reason": "disk on fire"}},
        {"name": "hang", "arguments": {}},
        {"name": "unserialisable", "arguments": {}},
        {"name": "echo", "arguments": {"wrong": 1}},
    ]
    async with live_server(tool_modules=SAMPLES, tool_timeout_s=0.3) as srv:
        result = await chat_stream(srv.url, ask("break things", calls, reply="Still here."))
        metrics = (await httpx.AsyncClient(base_url=srv.url).get("/metrics")).text
    errors = {f.json["tool"]: f.json["error"] for f in result.events if f.type == "tool_result"}
    assert "RuntimeError: disk on fire" in errors["boom"]
    assert "took longer than 0.3 s" in errors["hang"]
    assert "not JSON" in errors["unserialisable"]
    assert "invalid arguments for echo" in errors["echo"]
    assert result.text == "Still here."
    assert result.types[-1] == "done"
    assert 'tokenrelay_tool_calls_total{outcome="timeout",tool="hang"} 1.0' in metrics
    assert 'tokenrelay_tool_calls_total{outcome="bad_result",tool="unserialisable"} 1.0' in metrics


async def test_max_tool_rounds_ends_a_runaway_loop(live_server: Any) -> None:
    body = ask("loop", [{"name": "echo", "arguments": {"text": "again"}}])
    body["options"]["scripted"]["tool_rounds"] = 50  # the model never stops asking
    async with live_server(tool_modules=SAMPLES, max_tool_rounds=2) as srv:
        result = await chat_stream(srv.url, body)
        provider = scripted(srv)
        session = result.events[0].json["session_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            history = (await client.get(f"/api/sessions/{session}")).json()["messages"]
    results = [f.json for f in result.events if f.type == "tool_result"]
    assert [r["call_id"] for r in results] == ["call_0", "call_1_0", "call_2_0"]
    assert [r["error"] is None for r in results] == [True, True, False]
    assert "limit of 2 tool rounds" in results[-1]["error"]
    status = next(f.json for f in result.events if f.type == "status")
    assert "Stopped after 2 rounds of tool calls" in status["message"]
    assert result.types[-1] == "done"
    assert result.last()["finish_reason"] == "max_tool_rounds"
    assert provider.stats.started == 3
    # every stored call has its result; the (empty) answer records why it ended
    roles = [m["role"] for m in history]
    assert roles == ["user"] + ["assistant", "tool"] * 3 + ["assistant"]
    assert history[-1]["metadata"]["finish_reason"] == "max_tool_rounds"


async def test_enable_tools_false_offers_no_tools(live_server: Any) -> None:
    async with live_server(tool_modules=SAMPLES) as srv:
        result = await chat_stream(srv.url, {"message": "hi", "options": {"enable_tools": False}})
        assert scripted(srv).last_request.tools == ()  # type: ignore[union-attr]
        get = await stream(
            srv.url, "GET", "/api/chat/stream", params={"message": "hi", "enable_tools": "false"}
        )
        assert scripted(srv).last_request.tools == ()  # type: ignore[union-attr]
        on = await chat_stream(srv.url, {"message": "hi"})
        offered = [t.name for t in scripted(srv).last_request.tools]  # type: ignore[union-attr]
    assert result.types[-1] == get.types[-1] == on.types[-1] == "done"
    assert {"get_weather", "calculate", "convert_units", "echo"} <= set(offered)


async def test_enable_tools_false_does_not_run_what_the_model_asks_for(live_server: Any) -> None:
    body = ask("calc", [{"name": "calculate", "arguments": {"expression": "1+1"}}])
    body["options"]["enable_tools"] = False
    async with live_server() as srv:
        result = await chat_stream(srv.url, body)
    assert "tool_call" in result.types and "tool_result" not in result.types
    assert result.last()["finish_reason"] == "tool_calls"


async def test_allow_list_limits_the_tools(live_server: Any) -> None:
    calls = [
        {"name": "calculate", "arguments": {"expression": "6*7"}},
        {"name": "echo", "arguments": {"text": "sneaky"}},
    ]
    body = ask("calc", calls, tools=["calculate"])
    async with live_server(tool_modules=SAMPLES) as srv:
        result = await chat_stream(srv.url, body)
        offered = [t.name for t in scripted(srv).last_request.tools]  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            bad = await client.post(
                "/api/chat/stream", json={"message": "x", "options": {"tools": ["nope"]}}
            )
    assert offered == ["calculate"]
    results = {f.json["tool"]: f.json for f in result.events if f.type == "tool_result"}
    assert results["calculate"]["result"] == {"expression": "6*7", "result": 42}
    assert "unknown tool 'echo'" in results["echo"]["error"]
    assert "calculate" in results["echo"]["error"]
    assert bad.status_code == 422
    assert bad.json()["code"] == "VALIDATION_ERROR"
    assert "nope" in bad.json()["message"]


async def test_history_holds_tool_calls_and_results_and_replays_them(live_server: Any) -> None:
    body = ask(
        "convert 20 C",
        [{"name": "convert_units", "arguments": {"value": 20, "from_unit": "C", "to_unit": "F"}}],
        reply="20 °C is 68 °F.",
    )
    async with live_server() as srv:
        first = await chat_stream(srv.url, body)
        session_id = first.events[0].json["session_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            history = (await client.get(f"/api/sessions/{session_id}")).json()["messages"]
        second = await chat_stream(
            srv.url,
            {"message": "and 30 C?", "session_id": session_id, "options": {"enable_tools": False}},
        )
        replayed = scripted(srv).last_request
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    _, calls, tool, final = history
    assert calls["metadata"]["tool_calls"] == [
        {
            "id": "call_0",
            "name": "convert_units",
            "arguments": {"value": 20, "from_unit": "C", "to_unit": "F"},
        }
    ]
    assert calls["status"] == "complete"
    assert tool["metadata"] == {"call_id": "call_0", "tool": "convert_units", "error": False}
    assert '"result": 68.0' in tool["content"]
    assert final["content"] == "20 °C is 68 °F." and final["status"] == "complete"
    assert "tool_calls" not in final["metadata"]
    assert first.last()["message_id"] == final["id"]
    assert second.types[-1] == "done"
    assert replayed is not None
    roles = [m.role for m in replayed.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert replayed.messages[2].tool_calls[0].name == "convert_units"
    assert replayed.messages[3].tool_call_id == "call_0"


async def test_cancel_reaches_a_running_tool_and_the_history_stays_whole(live_server: Any) -> None:
    body = ask("hang", [{"name": "hang", "arguments": {}}])
    async with (
        live_server(tool_modules=SAMPLES, tool_timeout_s=120) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=60) as client,
        client.stream("POST", "/api/chat/stream", json=body) as response,
    ):
        seen, cancelled = "", False
        async for chunk in response.aiter_text():
            seen += chunk
            if "event: tool_progress" in seen and not cancelled:
                stream_id = parse_frames(seen)[0].json["stream_id"]
                await client.post(f"/api/streams/{stream_id}/cancel")
                cancelled = True
        frames = [f for f in parse_frames(seen) if f.data is not None]
        session_id = frames[0].json["session_id"]
        call_id = next(f.json["call_id"] for f in frames if f.type == "tool_call")
        history = (await client.get(f"/api/sessions/{session_id}")).json()["messages"]
    assert frames[-1].type == "error" and frames[-1].json["code"] == "CANCELLED"
    assert call_id in sample_tools.HANG_CANCELLED
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["status"] == "interrupted"
    assert history[1]["metadata"]["tool_calls"][0]["id"] == call_id
    assert history[2]["metadata"]["call_id"] == call_id
    assert "not run" in history[2]["content"]


async def test_stateless_concurrent_streams_do_not_share_barriers(live_server: Any) -> None:
    # two turns at once, each with its own group: tools of different streams are independent
    def body(group: str) -> dict[str, Any]:
        calls = [{"name": "meet", "arguments": {"group": group, "parties": 2}}] * 2
        return ask("meet", calls)

    async with live_server(tool_modules=SAMPLES, tool_timeout_s=20) as srv:
        a, b = await asyncio.gather(
            chat_stream(srv.url, body("pair-a")), chat_stream(srv.url, body("pair-b"))
        )
    for result in (a, b):
        assert [f.json["error"] for f in result.events if f.type == "tool_result"] == [None, None]


@pytest.mark.model
async def test_the_local_model_makes_well_formed_tool_calls(live_server: Any) -> None:
    body = {
        "message": "Use the calculator: what is 12 * 7?",
        "options": {"tools": ["calculate"], "temperature": 0, "max_tokens": 64},
    }
    async with live_server(provider="local") as srv:
        result = await chat_stream(srv.url, body, timeout=120)
    assert result.types[-1] == "done", result.last()
    calls = [f.json for f in result.events if f.type == "tool_call"]
    results = [f.json for f in result.events if f.type == "tool_result"]
    # named tools: the local model calls one first, and the grammar makes the call well
    # formed (the offered tool, arguments of its schema); then it answers in free text
    assert len(calls) == 1
    assert calls[0]["tool"] == "calculate"
    assert isinstance(calls[0]["args"].get("expression"), str)
    assert [r["call_id"] for r in results] == [calls[0]["call_id"]]
    assert result.text.strip()  # and the model answered (after the tool, in free text)
