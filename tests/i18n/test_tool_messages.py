"""Tools in the user's language: a `tool_result`'s `error` and every `tool_progress` message
in Korean by Accept-Language or `options.locale`, the same stable `error_code` in both
languages, and the model told in English (the `tool` message it reads, and the history that
replays it), while the history keeps the text the user was shown."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import chat_stream
from tests.tools.conftest import FakeOpenMeteo, serve_open_meteo
from tokenrelay.providers.scripted import ScriptedProvider

HANGUL = re.compile(r"[가-힣]")
KO = {"Accept-Language": "ko-KR,ko;q=0.9"}
SAMPLES = ["tests.tools.sample_tools"]

# one call for every way a tool can fail, and the code each must get
FAILING = [
    ({"name": "calculate", "arguments": {"expression": "1/0"}}, "error"),
    (
        {"name": "convert_units", "arguments": {"value": 1, "from_unit": "C", "to_unit": "kg"}},
        "error",
    ),
    ({"name": "current_time", "arguments": {"timezone": "Mars/Base"}}, "error"),
    ({"name": "boom", "arguments": {"reason": "disk on fire"}}, "error"),
    ({"name": "hang", "arguments": {}}, "timeout"),
    ({"name": "unserialisable", "arguments": {}}, "bad_result"),
    ({"name": "echo", "arguments": {"wrong": 1}}, "invalid_arguments"),
    ({"name": "not_a_tool", "arguments": {}}, "unknown_tool"),
]


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with serve_open_meteo() as fake:
        yield fake


def ask(calls: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    scripted = {"tool_calls": calls, "reply": "Done."}
    return {"message": "q", "options": {"scripted": scripted, **options}}


def results(result: Any) -> dict[str, dict[str, Any]]:
    return {f.json["tool"]: f.json for f in result.events if f.type == "tool_result"}


def model_saw(srv: Any) -> dict[str, str]:
    """The `tool` messages of the model's last round, by tool name."""
    provider: ScriptedProvider = srv.app.state.services.providers.get("scripted")
    assert provider.last_request is not None
    return {m.name or "": m.content for m in provider.last_request.messages if m.role == "tool"}


@pytest.mark.parametrize(
    ("headers", "options"), [(KO, {}), ({"Accept-Language": "en"}, {"locale": "ko"})]
)
async def test_every_tool_failure_in_korean_with_its_code(
    live_server: Any, headers: dict[str, str], options: dict[str, Any]
) -> None:
    async with live_server(tool_modules=SAMPLES, tool_timeout_s=0.5) as srv:
        result = await chat_stream(
            srv.url, ask([call for call, _ in FAILING], **options), headers=headers
        )
        told = model_saw(srv)
    found = results(result)
    assert result.types[-1] == "done"
    for call, code in FAILING:
        event = found[call["name"]]
        assert event["result"] is None and event["error_code"] == code, event
        assert HANGUL.search(event["error"]), event
        assert "TOKENRELAY" not in event["error"]
        assert not HANGUL.search(told[call["name"]]), told[call["name"]]  # the model: English
    assert found["calculate"]["error"] == "0으로 나눌 수 없습니다"
    assert told["calculate"] == '{"error": "division by zero"}'


async def test_the_same_failures_in_english_with_the_same_codes(live_server: Any) -> None:
    async with live_server(tool_modules=SAMPLES, tool_timeout_s=0.5) as srv:
        result = await chat_stream(srv.url, ask([call for call, _ in FAILING]))
    found = results(result)
    for call, code in FAILING:
        event = found[call["name"]]
        assert event["error_code"] == code and not HANGUL.search(event["error"]), event
    assert found["calculate"]["error"] == "division by zero"
    assert "took longer than 0.5 s" in found["hang"]["error"]


async def test_a_tool_that_succeeds_has_no_error_code(live_server: Any) -> None:
    async with live_server() as srv:
        result = await chat_stream(
            srv.url, ask([{"name": "calculate", "arguments": {"expression": "6*7"}}]), headers=KO
        )
    event = results(result)["calculate"]
    assert event["error"] is None and "error_code" not in event
    assert event["result"] == {"expression": "6*7", "result": 42}


async def test_weather_progress_and_its_failure_in_korean(
    live_server: Any, open_meteo: FakeOpenMeteo
) -> None:
    from tests.conftest import free_port

    calls = [{"name": "get_weather", "arguments": {"location": "Paris", "days": 1}}]
    async with live_server(
        weather_base_url=open_meteo.url, geocoding_base_url=open_meteo.url
    ) as srv:
        ok = await chat_stream(srv.url, ask(calls), headers=KO)
    down = f"http://127.0.0.1:{free_port()}"
    async with live_server(weather_base_url=down, geocoding_base_url=down) as srv:
        failed = await chat_stream(srv.url, ask(calls), headers=KO)
    progress = [f.json["message"] for f in ok.events if f.type == "tool_progress"]
    assert len(progress) == 2 and all(HANGUL.search(m) for m in progress), progress
    event = results(failed)["get_weather"]
    assert event["error_code"] == "error" and HANGUL.search(event["error"])
    assert down not in event["error"]  # the service's address is for the operator (the log)


async def test_the_round_limit_in_korean_and_the_history_keeps_what_was_shown(
    live_server: Any,
) -> None:
    body = ask([{"name": "calculate", "arguments": {"expression": "1/0"}}], locale="ko")
    body["options"]["scripted"]["tool_rounds"] = 50  # the model never stops asking
    async with live_server(max_tool_rounds=1) as srv:
        result = await chat_stream(srv.url, body)
        session = result.events[0].json["session_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            history = (await client.get(f"/api/sessions/{session}")).json()["messages"]
    events = [f.json for f in result.events if f.type == "tool_result"]
    assert [e["error_code"] for e in events] == ["error", "limit"]
    assert all(HANGUL.search(e["error"]) for e in events)
    status = next(f.json for f in result.events if f.type == "status")
    assert HANGUL.search(status["message"])
    tools = [m for m in history if m["role"] == "tool"]
    assert [m["metadata"]["error_code"] for m in tools] == ["error", "limit"]
    assert tools[0]["metadata"]["error_text"] == "0으로 나눌 수 없습니다"
    assert tools[0]["content"] == '{"error": "division by zero"}'  # replayed to the model
