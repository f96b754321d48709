"""One schema, every transport: the GET query form reads what the JSON body reads (derived
from `ChatRequest`), unknown parameters are 422s, and every request field takes its camelCase
spelling too (docs/protocol.md, "The query form" and "Spelling")."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic.alias_generators import to_camel

from tests.helpers import StreamResult, chat_stream, stream
from tokenrelay.errors import ValidationError
from tokenrelay.planner.models import PlanOptions, PlanRequest
from tokenrelay.server.app import create_app
from tokenrelay.server.routes.chat import CHAT_QUERY
from tokenrelay.server.schemas import ChatOptions, ChatRequest, RagOptions

# every option of a chat request, each set to something other than its default; a field
# added to ChatOptions fails `test_the_examples_cover_every_field` until it has one here
OPTIONS: dict[str, Any] = {
    "provider": "scripted",
    "model": "scripted-contract",
    "temperature": 0.3,
    "max_tokens": 77,
    "scripted": {"reply": "Haeundae is a beach in Busan.", "tokens": 3, "delay_ms": 0},
    "rag": {"top_k": 1, "min_score": 0.0},
    "enable_tools": True,
    "tools": ["calculate", "current_time"],
    "system": "You answer about Busan.",
    "top_p": 0.9,
    "stop": ["END"],
    "seed": 7,
    "frequency_penalty": 0.1,
    "presence_penalty": 0.2,
    "locale": "en",
}
BODY: dict[str, Any] = {
    "message": "Tell me about Haeundae",
    "session_id": "set-per-test",
    "options": OPTIONS,
    "event_names": False,
}


def test_the_examples_cover_every_field() -> None:
    assert set(BODY) == set(ChatRequest.model_fields), "give every new field an example here"
    assert set(OPTIONS) == set(ChatOptions.model_fields), "give every new option an example"


def camel_keys(value: Any) -> Any:
    """A JSON value with every object key in camelCase, as a JS client writes it."""
    if isinstance(value, dict):
        return {to_camel(k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def query_of(body: dict[str, Any], *, camel: bool, dotted: bool) -> list[tuple[str, str]]:
    """The documented query form of a body, written independently of the server's reader:
    fields by name, options flattened (or `options.<name>`), lists repeated, objects as
    JSON text, booleans as true/false."""
    spell = to_camel if camel else str
    items: list[tuple[str, str]] = []
    fields = [(spell(k), v) for k, v in body.items() if k != "options"]
    prefix = "options." if dotted else ""
    fields += [(prefix + spell(k), v) for k, v in body.get("options", {}).items()]
    for name, value in fields:
        inner = camel_keys(value) if camel and isinstance(value, dict) else value
        for one in inner if isinstance(inner, list) else [inner]:
            items.append((name, text_of(one)))
    return items


@pytest.mark.parametrize("camel", [False, True], ids=["snake", "camel"])
@pytest.mark.parametrize("dotted", [False, True], ids=["flat", "options."])
def test_the_query_form_reads_every_field_as_the_body_does(camel: bool, dotted: bool) -> None:
    body = {**BODY, "session_id": "abc"}
    expected = ChatRequest.model_validate(body)
    got = CHAT_QUERY.read(query_of(body, camel=camel, dotted=dotted))
    assert got == expected
    assert got.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)
    # and the body itself, in camelCase, is the same request
    assert ChatRequest.model_validate(camel_keys(body)) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ('{"topK": 2}', RagOptions(top_k=2)),
    ],
)
def test_rag_takes_a_boolean_or_json(text: str, value: Any) -> None:
    assert CHAT_QUERY.read([("message", "hi"), ("rag", text)]).options.rag == value


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("0", False)])
def test_booleans_as_true_false_1_0(text: str, value: bool) -> None:
    read = CHAT_QUERY.read([("message", "hi"), ("enableTools", text), ("event_names", text)])
    assert read.options.enable_tools is value and read.event_names is value


def test_reserved_parameters_are_no_fields_and_pass() -> None:
    read = CHAT_QUERY.read([("message", "hi"), ("last_event_id", "s:1"), ("token", "k")])
    assert read == ChatRequest(message="hi")


QUERY_ERRORS: list[tuple[list[tuple[str, str]], str]] = [
    ([("message", "hi"), ("history", "[]")], "unknown query parameter 'history'"),
    ([("message", "hi"), ("timeout", "5")], "unknown query parameter 'timeout'"),
    ([("message", "hi"), ("sessionid", "x")], "unknown query parameter 'sessionid'"),
    (
        [("message", "hi"), ("session_id", "a"), ("sessionId", "b")],
        "session_id is given twice, as 'session_id' and 'sessionId'",
    ),
    (
        [("message", "hi"), ("provider", "scripted"), ("options.provider", "scripted")],
        "options.provider is given twice, as 'provider' and 'options.provider'",
    ),
    ([("message", "a"), ("message", "b")], "message: given more than once"),
    ([("message", "hi"), ("rag", "{top_k: 1}")], "rag: not valid JSON"),
    ([("message", "hi"), ("maxTokens", "lots")], "maxTokens: Input should be a valid integer"),
    ([("message", "hi"), ("rag", '{"topK": 0}')], "rag.RagOptions.topK: Input should be greater"),
    (
        [("message", "hi"), ("scripted", '{"delay_ms": 1, "delayMs": 2}')],
        "options.scripted.delay_ms is given twice, as 'delay_ms' and 'delayMs'",
    ),
    ([("enable_tools", "false")], "message is required"),
]


@pytest.mark.parametrize(("items", "message"), QUERY_ERRORS, ids=[m for _, m in QUERY_ERRORS])
def test_query_errors_name_the_parameter(items: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CHAT_QUERY.read(items)
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.http_status == 422


def test_openapi_lists_the_query_form_from_the_model(settings_factory: Any) -> None:
    app = create_app(settings_factory())
    operation = app.openapi()["paths"]["/api/chat/stream"]["get"]
    names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    fields = set(ChatRequest.model_fields) - {"options"}
    assert names == fields | set(ChatOptions.model_fields)
    message = next(p for p in operation["parameters"] if p["name"] == "message")
    assert message["required"] is True
    # the body's documented spelling stays the names
    schemas = app.openapi()["components"]["schemas"]
    assert set(schemas["ChatRequest"]["properties"]) == set(ChatRequest.model_fields)
    assert set(schemas["ChatOptions"]["properties"]) == set(ChatOptions.model_fields)


def test_plain_query_parameters_have_one_spelling(settings_factory: Any) -> None:
    """A route's own `Query` parameters cannot take a second spelling: a multi-word one must
    come from a request model through a `QueryForm` instead."""
    app = create_app(settings_factory())
    for route in app.api.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            for param in route.dependant.query_params:
                assert to_camel(param.alias) == param.alias, (route.path, param.alias)


# -- over HTTP


async def _new_session(client: httpx.AsyncClient, text: str) -> str:
    first = await client.post("/api/chat", json={"message": text})
    assert first.status_code == 200, first.text
    return str(first.json()["session_id"])


def _sent(srv: Any) -> Any:
    return srv.app.state.services.providers.get("scripted").last_request


async def test_get_with_every_option_is_the_same_turn_as_the_post(live_server: Any) -> None:
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        for title, text in (("Haeundae", "Haeundae is a beach in Busan."), ("Jeju", "Jeju")):
            added = await client.post("/api/documents", json={"title": title, "text": text})
            assert added.status_code == 201, added.text
        by_post, by_get = await _new_session(client, "hi"), await _new_session(client, "hi")
        post = await chat_stream(srv.url, {**BODY, "session_id": by_post})
        post_sent = _sent(srv)
        query = query_of({**BODY, "session_id": by_get}, camel=True, dotted=False)
        got = await stream(srv.url, "GET", "/api/chat/stream", params=query)
        get_sent = _sent(srv)
        history = (await client.get(f"/api/sessions/{by_get}")).json()["messages"]
    assert got.response.status_code == 200, got.raw
    assert get_sent == post_sent  # model, temperature, max_tokens, tools, rag context, scripted
    assert [t.name for t in get_sent.tools] == ["calculate", "current_time"]
    assert get_sent.model == "scripted-contract" and get_sent.max_tokens == 77
    assert got.types == post.types == ["metadata", "sources", "token", "token", "token", "done"]
    assert len(got.events[1].json["documents"]) == 1  # rag's top_k
    assert got.text == post.text == "Haeundae is a beach in Busan."
    assert all(f.event is None for f in got.events + post.events)  # event_names=false
    assert got.events[0].json["session_id"] == by_get
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


async def test_unknown_query_parameters_are_422_on_every_native_route(live_server: Any) -> None:
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        done = await client.post("/api/chat", json={"message": "hi"})
        stream_id = done.json()["stream_id"]
        answers = {
            "GET /api/chat/stream": await client.get(
                "/api/chat/stream", params={"message": "hi", "sessionId_": "x", "history": "1"}
            ),
            "POST /api/chat/stream": await client.post(
                "/api/chat/stream", params={"history": "1"}, json={"message": "hi"}
            ),
            "POST /api/chat": await client.post(
                "/api/chat", params={"history": "1"}, json={"message": "hi"}
            ),
            "GET /api/streams/{id}": await client.get(
                f"/api/streams/{stream_id}", params={"history": "1"}
            ),
            "GET /api/sessions": await client.get("/api/sessions", params={"history": "1"}),
            "GET /api/documents/search": await client.get(
                "/api/documents/search", params={"q": "x", "history": "1"}
            ),
        }
        sessions = (await client.get("/api/sessions")).json()["sessions"]
    for route, response in answers.items():
        assert response.status_code == 422, (route, response.text)
        error = response.json()
        assert error["code"] == "VALIDATION_ERROR"
        if route == "GET /api/chat/stream":
            assert error["message"] == "unknown query parameter 'sessionId_'"
            assert [d["loc"] for d in error["details"]] == [
                ["query", "sessionId_"],
                ["query", "history"],
            ]
        else:
            assert error["message"] == "unknown query parameter 'history'", route
    assert len(sessions) == 1  # nothing was started by the refused requests


async def test_camel_case_bodies_and_snake_case_answers(live_server: Any) -> None:
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        session = await _new_session(client, "hi")
        camel = camel_keys({**BODY, "session_id": session})
        streamed = await chat_stream(srv.url, camel)
        as_json = await client.post("/api/chat", json={**camel, "eventNames": None})
        listed = (await client.get("/api/sessions")).json()
    assert streamed.response.status_code == 200, streamed.raw
    assert streamed.text == "Haeundae is a beach in Busan."
    assert all(f.event is None for f in streamed.events)  # eventNames: false
    assert streamed.events[0].json["session_id"] == session
    done = streamed.last()
    assert {"session_id", "message_id", "finish_reason", "history_length"} <= set(done)
    assert as_json.status_code == 200, as_json.text
    answer = as_json.json()
    assert {"stream_id", "trace_id", "session_id", "content", "usage"} <= set(answer)
    for value in (done, answer, listed, streamed.events[0].json):
        assert not _camel_keys_in(value), value


def _camel_keys_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [k for k in value if k != k.lower()]
        return own + [k for v in value.values() for k in _camel_keys_in(v)]
    if isinstance(value, list):
        return [k for v in value for k in _camel_keys_in(v)]
    return []


BOTH_SPELLINGS: list[tuple[str, dict[str, Any], str]] = [
    (
        "/api/chat/stream",
        {"message": "hi", "session_id": "a", "sessionId": "a"},
        "session_id is given twice",
    ),
    (
        "/api/chat",
        {"message": "hi", "options": {"maxTokens": 5, "max_tokens": 5}},
        "options.max_tokens is given twice",
    ),
    (
        "/api/chat/stream",
        {"message": "hi", "options": {"rag": {"top_k": 1, "topK": 1}}},
        "options.rag.top_k is given twice",
    ),
    (
        "/api/plans/generate",
        {
            "location": "Busan",
            "startDate": "2030-06-01",
            "start_date": "2030-06-01",
            "end_date": "2030-06-02",
        },
        "start_date is given twice",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), BOTH_SPELLINGS)
async def test_both_spellings_of_one_field_are_422(
    live_server: Any, path: str, body: dict[str, Any], message: str
) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        response = await client.post(path, json=body)
        sessions = (await client.get("/api/sessions")).json()["sessions"]
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["message"].startswith(message), response.json()
    assert sessions == []


async def test_other_requests_take_camel_case_too(live_server: Any) -> None:
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        for title in ("Haeundae beach", "Haeundae market", "Haeundae station"):
            await client.post("/api/documents", json={"title": title, "text": f"{title} in Busan"})
        search = await client.get("/api/documents/search", params={"q": "Haeundae", "topK": 2})
        both = await client.get(
            "/api/documents/search", params={"q": "Haeundae", "topK": 2, "top_k": 2}
        )
        twice = await client.get(
            "/api/chat/stream",
            params={"message": "hi", "enable_tools": "false", "enableTools": "false"},
        )
        turn = await client.post("/api/chat", json={"message": "hi"})
        stream_id = turn.json()["stream_id"]
        replay = await stream(
            srv.url, "GET", f"/api/streams/{stream_id}", params={"eventNames": "false"}
        )
        # the planner reads endDate and startDate: the dates' own check names them
        plan = await client.post(
            "/api/plans/generate",
            json={"location": "Busan", "startDate": "2030-06-02", "endDate": "2030-06-01"},
        )
    assert search.status_code == 200 and len(search.json()["hits"]) == 2, search.text
    assert both.status_code == 422 and "given twice" in both.json()["message"]
    assert twice.status_code == 422, twice.text
    assert twice.json()["message"].startswith("options.enable_tools is given twice")
    assert twice.json()["details"][0]["loc"] == ["query", "enableTools"]
    assert replay.types[-1] == "done" and all(f.event is None for f in replay.events)
    assert plan.status_code == 422 and "is before start_date" in plan.json()["message"]
    assert (
        PlanRequest.model_validate(
            {
                "location": "x",
                "startDate": "2030-06-01",
                "endDate": "2030-06-01",
                "maxIterations": 3,
            }
        ).max_iterations
        == 3
    )
    assert PlanOptions.model_validate({"maxTokens": 100}).max_tokens == 100


async def test_get_stream_resumes_with_the_body_in_its_query(live_server: Any) -> None:
    """An EventSource reconnects to the same URL (now read as a ChatRequest) with
    Last-Event-ID: it continues its stream rather than asking again."""
    async with live_server() as srv:
        params = query_of({**BODY, "session_id": None}, camel=True, dotted=False)
        params = [(k, v) for k, v in params if k != "sessionId"]
        first: StreamResult = await stream(srv.url, "GET", "/api/chat/stream", params=params)
        asked = _sent(srv)
        last_id = first.events[2].id
        again = await stream(
            srv.url, "GET", "/api/chat/stream", params=params, headers={"Last-Event-ID": last_id}
        )
        assert _sent(srv) is asked  # not asked again
    assert first.types[-1] == "done"
    assert again.types == first.types[3:]
