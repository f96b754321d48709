"""useChat's backend over real HTTP (issue #21): the UI message stream, client-chosen chat ids,
resume, stop, regenerate and the stored chat as UIMessages, with the scripted provider.

The chunks are checked here as JSON; tests/test_ui_chat_node.py feeds the same streams
through the AI SDK's own parser and schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.helpers import chat_stream, parse_frames
from tests.security.conftest import ALICE, BOB, KEYS
from tokenrelay.providers.scripted import ScriptedProvider

SAMPLES = ["tests.tools.sample_tools"]
REPLY = "Seoul has five grand palaces."


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def body(chat_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "messages": [user(text)],
        "trigger": "submit-message",
        "messageId": None,
        **extra,
    }


def chunks_of(raw: str) -> list[dict[str, Any]]:
    """The JSON chunks of a UI message stream; `[DONE]` must be its last data line."""
    data = [f.data for f in parse_frames(raw) if f.data is not None]
    assert data and data[-1] == "[DONE]", data[-3:]
    return [json.loads(d) for d in data[:-1]]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


async def post_chat(
    client: httpx.AsyncClient, payload: dict[str, Any], **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    response = await client.post("/api/ui/chat", json=payload, **kwargs)
    if response.status_code != 200:
        return response, []
    return response, chunks_of(response.text)


def scripted(srv: Any) -> ScriptedProvider:
    provider: ScriptedProvider = srv.app.state.services.providers.get("scripted")
    return provider


async def test_text_answer_as_ui_message_chunks(live_server: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        options = {"scripted": {"reply": REPLY, "tokens": 4}}
        response, chunks = await post_chat(client, body("chat-text", "palaces?", options=options))
        loaded = await client.get("/api/ui/chat/chat-text/messages")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-trace-id"]
    types = [c["type"] for c in chunks]
    assert types[:3] == ["start", "message-metadata", "start-step"]
    assert types[3:9] == ["text-start", *["text-delta"] * 4, "text-end"]
    assert types[9:] == ["finish-step", "message-metadata", "finish"]
    start, meta = chunks[0], chunks[1]["messageMetadata"]
    assert meta["sessionId"] == "chat-text" and meta["provider"] == "scripted"
    assert meta["traceId"] == response.headers["x-trace-id"] and meta["streamId"]
    assert text_of(chunks) == REPLY
    end = chunks[-2]["messageMetadata"]
    assert end["finishReason"] == "stop" and end["usage"]["outputTokens"] == 4
    assert end["historyLength"] == 2 and chunks[-1] == {"type": "finish", "finishReason": "stop"}
    # the stored chat, as useChat shows it after a reload: the answer keeps the start's id
    assert loaded.status_code == 200
    messages = loaded.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["parts"] == [{"type": "text", "text": "palaces?", "state": "done"}]
    answer = messages[1]
    assert answer["id"] == start["messageId"]
    assert answer["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": REPLY, "state": "done"},
    ]
    assert answer["metadata"]["status"] == "complete"


async def test_the_last_message_or_the_whole_list_give_the_same_turn(live_server: Any) -> None:
    """The server keeps the history: only the last user message is read."""
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        await post_chat(client, body("chat-a", "first"))
        await post_chat(client, body("chat-b", "first"))
        _, short = await post_chat(client, body("chat-a", "second"))
        sent_short = scripted(srv).last_request
        whole = [
            user("first"),
            {"id": "x", "role": "assistant", "parts": [{"type": "text", "text": "anything"}]},
            user("second", "u2"),
        ]
        _, long = await post_chat(client, {**body("chat-b", "second"), "messages": whole})
        sent_long = scripted(srv).last_request
    assert sent_short is not None and sent_long is not None
    assert [m.content for m in sent_short.messages] == [m.content for m in sent_long.messages]
    assert [m.role for m in sent_long.messages][-3:] == ["user", "assistant", "user"]
    assert text_of(short) == text_of(long)


async def test_tools_with_progress_and_a_failing_tool(live_server: Any) -> None:
    calls = [
        {"name": "steps", "arguments": {"count": 2}, "id": "call-s"},
        {"name": "boom", "arguments": {"reason": "disk on fire"}, "id": "call-b"},
    ]
    options = {"scripted": {"tool_calls": calls, "reply": "Done."}}
    async with (
        live_server(tool_modules=SAMPLES) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        _, chunks = await post_chat(client, body("chat-tools", "go", options=options))
        loaded = (await client.get("/api/ui/chat/chat-tools/messages")).json()["messages"]
    types = [c["type"] for c in chunks]
    starts = [c for c in chunks if c["type"] == "tool-input-start"]
    assert [(c["toolCallId"], c["toolName"]) for c in starts] == [
        ("call-s", "steps"),
        ("call-b", "boom"),
    ]
    deltas = [c for c in chunks if c["type"] == "tool-input-delta"]
    assert json.loads(deltas[0]["inputTextDelta"]) == {"count": 2}
    available = [c for c in chunks if c["type"] == "tool-input-available"]
    assert available[1]["input"] == {"reason": "disk on fire"}
    progress = [c for c in chunks if c["type"] == "data-tool-progress"]
    assert [p["data"]["message"] for p in progress] == ["step 1 of 2", "step 2 of 2"]
    assert all(p["id"] == "call-s" for p in progress)  # one part, updated in place
    output = next(c for c in chunks if c["type"] == "tool-output-available")
    assert output == {
        "type": "tool-output-available",
        "toolCallId": "call-s",
        "output": {"steps": 2},
    }
    failed = next(c for c in chunks if c["type"] == "tool-output-error")
    assert failed["toolCallId"] == "call-b" and "disk on fire" in failed["errorText"]
    # the answer after the tools is a second step
    assert types.count("start-step") == 2 and types.count("finish-step") == 2
    second = types.index("start-step", 3)
    assert types[second - 1] == "finish-step" and types[second + 1] == "text-start"
    assert text_of(chunks) == "Done."
    # reloaded: one assistant UIMessage with both rounds, the tools with their outputs
    answer = loaded[1]
    kinds = [p["type"] for p in answer["parts"]]
    assert kinds == [
        *("step-start", "tool-steps", "tool-boom", "data-tool-progress"),
        *("step-start", "text"),
    ]
    assert answer["parts"][3] == progress[-1]  # the call's last progress, where it was shown
    steps_part, boom_part = answer["parts"][1], answer["parts"][2]
    assert steps_part["state"] == "output-available" and steps_part["output"] == {"steps": 2}
    assert steps_part["input"] == {"count": 2} and steps_part["toolCallId"] == "call-s"
    assert boom_part["state"] == "output-error" and "disk on fire" in boom_part["errorText"]


async def test_sources_become_source_parts(live_server: Any) -> None:
    text = "Gyeongbokgung is the main royal palace of the Joseon dynasty in Seoul."
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        loaded = await client.post(
            "/api/documents",
            json={"title": "Palaces", "text": text, "source": "https://example.org/palaces"},
        )
        assert loaded.status_code in (200, 201), loaded.text
        options = {"rag": True, "scripted": {"reply": "It is Gyeongbokgung."}}
        _, chunks = await post_chat(
            client, body("chat-rag", "Which is the main palace?", options=options)
        )
        stored = (await client.get("/api/ui/chat/chat-rag/messages")).json()["messages"]
    sources = [c for c in chunks if c["type"].startswith("source-")]
    assert sources and sources[0]["type"] == "source-url"
    assert sources[0]["url"] == "https://example.org/palaces" and sources[0]["title"] == "Palaces"
    assert "Gyeongbokgung" in sources[0]["providerMetadata"]["tokenrelay"]["snippet"]
    parts = stored[1]["parts"]
    assert parts[1]["type"] == "source-url" and parts[1]["sourceId"] == sources[0]["sourceId"]


async def test_errors_before_the_stream_are_json_with_their_status(live_server: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        not_user = {
            **body("chat-e", "x"),
            "messages": [{"id": "a", "role": "assistant", "parts": []}],
        }
        responses = {
            "last is not the user's": await client.post("/api/ui/chat", json=not_user),
            "no text part": await client.post(
                "/api/ui/chat",
                json={
                    **body("chat-e", "x"),
                    "messages": [{"id": "a", "role": "user", "parts": []}],
                },
            ),
            "bad chat id": await client.post("/api/ui/chat", json=body("has space", "x")),
            "unknown field": await client.post("/api/ui/chat", json=body("chat-e", "x", extra=1)),
            "unknown provider": await client.post(
                "/api/ui/chat", json=body("chat-e", "x", options={"provider": "nope"})
            ),
        }
        regenerate_new = await client.post(
            "/api/ui/chat", json=body("chat-new", "x", trigger="regenerate-message")
        )
    for why, response in responses.items():
        assert 400 <= response.status_code < 500, (why, response.text)
        error = response.json()
        assert error["code"] and error["message"] and error["suggestion"], why
    assert responses["last is not the user's"].json()["code"] == "VALIDATION_ERROR"
    assert regenerate_new.status_code == 404
    assert regenerate_new.json()["code"] == "SESSION_NOT_FOUND"


async def test_a_failure_after_the_start_is_an_error_chunk(live_server: Any) -> None:
    options = {"scripted": {"reply": "ab cd ef gh", "tokens": 4, "error_after": 2}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        response, chunks = await post_chat(client, body("chat-fail", "x", options=options))
    assert response.status_code == 200
    types = [c["type"] for c in chunks]
    assert types[-5:] == ["text-end", "finish-step", "message-metadata", "error", "finish"]
    error = chunks[-3]["messageMetadata"]["error"]
    assert error["code"] == "PROVIDER_ERROR" and error["suggestion"]
    assert chunks[-2]["errorText"] == error["message"]
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}
    assert text_of(chunks) == "ab cd "


async def _read_some(
    client: httpx.AsyncClient, method: str, path: str, count: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """The first `count` text deltas' worth of chunks, then the connection is dropped."""
    raw = ""
    async with client.stream(method, path, **kwargs) as response:
        assert response.status_code == 200
        async for piece in response.aiter_text():
            raw += piece
            if raw.count('"text-delta"') >= count:
                break
    cut = raw.rfind("\n\n")
    return [json.loads(f.data) for f in parse_frames(raw[: cut + 2]) if f.data]


async def test_resume_replays_the_running_answer_from_its_start(live_server: Any) -> None:
    reply = " ".join(f"w{i}" for i in range(40))
    options = {"scripted": {"reply": reply, "tokens": 40, "delay_ms": 40}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        assert (await client.get("/api/ui/chat/chat-r/stream")).status_code == 204  # no chat yet
        first = await _read_some(
            client, "POST", "/api/ui/chat", 3, json=body("chat-r", "long", options=options)
        )
        # the page reloads: the stored chat has the answer so far, then the resume replays it
        stored = (await client.get("/api/ui/chat/chat-r/messages")).json()["messages"]
        resumed = await client.get("/api/ui/chat/chat-r/stream")
        after = await client.get("/api/ui/chat/chat-r/stream")
    assert first[0]["type"] == "start"
    assert stored[0]["role"] == "user"
    assert resumed.status_code == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = chunks_of(resumed.text)
    assert chunks[0] == first[0]  # the same message id: the replay replaces the partial one
    assert text_of(chunks) == reply  # from the start: nothing lost, nothing twice
    assert chunks[-1]["type"] == "finish"
    assert after.status_code == 204  # finished: nothing to resume


async def test_stop_cancels_and_keeps_the_partial_answer(live_server: Any) -> None:
    options = {"scripted": {"reply": "a b c d e f g h", "tokens": 8, "stall_after": 2}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        async with client.stream(
            "POST", "/api/ui/chat", json=body("chat-s", "x", options=options)
        ) as response:
            pieces = response.aiter_text()
            raw = ""
            while raw.count('"text-delta"') < 2:
                raw += await anext(pieces)
            stopped = await client.post("/api/ui/chat/chat-s/stop")
            async for piece in pieces:
                raw += piece
        again = await client.post("/api/ui/chat/chat-s/stop")
        resumed = await client.get("/api/ui/chat/chat-s/stream")
        stored = (await client.get("/api/ui/chat/chat-s/messages")).json()["messages"]
        unknown = await client.post("/api/ui/chat/chat-none/stop")
    assert stopped.status_code == 200
    assert stopped.json()["cancelled"] is True and stopped.json()["stream_id"]
    assert again.json() == {"session_id": "chat-s", "stream_id": None, "cancelled": False}
    chunks = chunks_of(raw)
    assert [c["type"] for c in chunks][-4:] == ["text-end", "finish-step", "abort", "finish"]
    assert chunks[-1] == {"type": "finish", "finishReason": "other"}
    assert resumed.status_code == 204
    answer = stored[-1]
    assert answer["metadata"]["status"] == "interrupted"
    assert answer["parts"][-1]["text"] == "a b "
    assert unknown.status_code == 404 and unknown.json()["code"] == "SESSION_NOT_FOUND"


async def test_closing_the_connection_does_not_stop_the_answer(live_server: Any) -> None:
    options = {"scripted": {"reply": "a b c d e f", "tokens": 6, "delay_ms": 30}}
    async with (
        live_server(disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await _read_some(
            client, "POST", "/api/ui/chat", 1, json=body("chat-c", "x", options=options)
        )
        resumed = await client.get("/api/ui/chat/chat-c/stream")
    assert text_of(chunks_of(resumed.text)) == "a b c d e f"


async def test_regenerate_replaces_the_last_answer(live_server: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        await post_chat(client, body("chat-g", "one", options={"scripted": {"reply": "A1"}}))
        await post_chat(client, body("chat-g", "two", options={"scripted": {"reply": "old"}}))
        before = (await client.get("/api/ui/chat/chat-g/messages")).json()["messages"]
        regen = {
            **body("chat-g", "two", options={"scripted": {"reply": "new"}}),
            "trigger": "regenerate-message",
            "messageId": before[-1]["id"],
        }
        _, chunks = await post_chat(client, regen)
        sent = scripted(srv).last_request
        after = (await client.get("/api/ui/chat/chat-g/messages")).json()["messages"]
        history = (await client.get("/api/sessions/chat-g")).json()["messages"]
    assert text_of(chunks) == "new"
    assert sent is not None
    assert [m.content for m in sent.messages if m.role != "system"] == ["one", "A1", "two"]
    texts = [p["text"] for m in after for p in m["parts"] if p["type"] == "text"]
    assert texts == ["one", "A1", "two", "new"]
    assert chunks[0]["messageId"] == after[-1]["id"] != before[-1]["id"]
    # the old answer is kept as a version, marked superseded
    old = [m for m in history if m["content"] == "old"]
    assert old and old[0]["metadata"]["superseded"] is True


async def test_chat_ids_belong_to_the_key_that_made_them(live_server: Any) -> None:
    async with (
        live_server(api_keys=KEYS) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        mine, _ = await post_chat(client, body("alice-chat", "secret plan"), headers=ALICE)
        as_bob = [
            await client.post("/api/ui/chat", json=body("alice-chat", "x"), headers=BOB),
            await client.post("/api/ui/chat/alice-chat/stop", headers=BOB),
            await client.post(
                "/api/ui/chat",
                json=body("alice-chat", "x", trigger="regenerate-message"),
                headers=BOB,
            ),
            # the native API: a client-chosen id of another key is the same 404
            await client.post(
                "/api/chat", json={"message": "x", "session_id": "alice-chat"}, headers=BOB
            ),
        ]
        resume = await client.get("/api/ui/chat/alice-chat/stream", headers=BOB)
        bob_reads = await client.get("/api/ui/chat/alice-chat/messages", headers=BOB)
        nobody = await client.post("/api/ui/chat", json=body("alice-chat", "x"))
        own = await client.get("/api/ui/chat/alice-chat/messages", headers=ALICE)
    assert mine.status_code == 200
    for response in as_bob:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "SESSION_NOT_FOUND"
        assert "secret" not in response.text
    assert resume.status_code == 204
    assert bob_reads.json() == {"id": "alice-chat", "messages": []}  # as a chat not made yet
    assert nobody.status_code == 401
    assert len(own.json()["messages"]) == 2


async def test_native_chat_takes_a_client_chosen_session_id(live_server: Any) -> None:
    """Issue #23's part: `session_id` may name a session that does not exist yet."""
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        first = await chat_stream(srv.url, {"message": "hi", "session_id": "my-chat_1"})
        second = await client.post(
            "/api/chat", json={"message": "again", "session_id": "my-chat_1"}
        )
        info = (await client.get("/api/sessions/my-chat_1")).json()
        bad = await client.post("/api/chat", json={"message": "x", "session_id": "a/b"})
    assert first.last()["session_id"] == "my-chat_1"
    assert second.status_code == 200 and second.json()["history_length"] == 4
    assert info["id"] == "my-chat_1" and len(info["messages"]) == 4
    assert info["active_stream_id"] == second.json()["stream_id"]
    assert bad.status_code == 422


async def test_two_first_turns_on_one_new_id_make_one_session(live_server: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        results = await asyncio.gather(
            *(
                client.post("/api/chat", json={"message": "hi", "session_id": "race"})
                for _ in range(3)
            )
        )
        info = (await client.get("/api/sessions/race")).json()
    # one turn at a time (issue #23): each is answered, or refused while another runs
    answered = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    assert answered and all(r.json()["code"] == "SESSION_BUSY" for r in refused)
    assert [m["role"] for m in info["messages"]] == ["user", "assistant"] * len(answered)


async def test_resume_and_stop_from_another_replica(
    live_server: Any, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    """The session (PostgreSQL) names the chat's stream, the log (Redis) holds it: a page
    that reloads onto another replica resumes there, and its Stop reaches the first one."""
    shared = {**redis_settings, **postgres_settings}
    options = {"scripted": {"reply": "a b c d e f g h", "tokens": 8, "stall_after": 3}}
    async with (
        live_server(**shared) as one,
        live_server(**shared) as two,
        httpx.AsyncClient(base_url=one.url, timeout=30) as first,
        httpx.AsyncClient(base_url=two.url, timeout=30) as second,
    ):
        await _read_some(
            first, "POST", "/api/ui/chat", 1, json=body("chat-x", "x", options=options)
        )
        async with second.stream("GET", "/api/ui/chat/chat-x/stream") as resumed:
            assert resumed.status_code == 200
            pieces = resumed.aiter_text()
            raw = ""
            while raw.count('"text-delta"') < 3:
                raw += await anext(pieces)
            stopped = await second.post("/api/ui/chat/chat-x/stop")
            async for piece in pieces:
                raw += piece
        stored = (await first.get("/api/ui/chat/chat-x/messages")).json()["messages"]
        after = await first.get("/api/ui/chat/chat-x/stream")
    assert stopped.json()["cancelled"] is True
    chunks = chunks_of(raw)
    assert chunks[0]["type"] == "start" and text_of(chunks) == "a b c "
    assert [c["type"] for c in chunks][-2:] == ["abort", "finish"]
    assert stored[-1]["metadata"]["status"] == "interrupted"
    assert stored[-1]["parts"][-1]["text"] == "a b c "
    assert after.status_code == 204
