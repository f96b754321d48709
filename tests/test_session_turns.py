"""Issue #23 over real HTTP: one turn at a time per session (SESSION_BUSY) on one replica and
across two (real PostgreSQL + Redis), claims that outlive their turn (a dead replica, a stream
gone), and regenerate / edit with their versions, through the routes and the Python client.
The scripted provider runs in this process, so what the model was sent is read back from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.helpers import parse_frames, stream
from tests.security.conftest import ALICE, BOB, KEYS
from tests.test_ui_chat import body as ui_body
from tests.test_ui_chat import chunks_of, scripted, text_of
from tokenrelay.client import AsyncClient, Client, SessionBusyError
from tokenrelay.services import Services

# an answer that stops after its first piece and runs until cancelled
STALL = {"scripted": {"reply": "one two three", "tokens": 3, "stall_after": 1}}


def services_of(srv: Any) -> Services:
    found: Services = srv.app.state.services
    return found


def reply(text: str) -> dict[str, Any]:
    return {"scripted": {"reply": text}}


async def running(client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> str:
    """Start a turn that stalls, read its first token, leave it running; its stream id."""
    raw = ""
    async with client.stream("POST", path, json=payload) as response:
        assert response.status_code == 200, await response.aread()
        async for piece in response.aiter_text():
            raw += piece
            whole = raw[: raw.rfind("\n\n") + 1]
            if '"token"' in whole or '"text-delta"' in whole:  # native, or the UI stream
                break
    session_id = payload.get("session_id") or payload["id"]
    info = (await client.get(f"/api/sessions/{session_id}")).json()
    return str(info["active_stream_id"])


async def chat(client: httpx.AsyncClient, session_id: str, text: str, answer: str) -> None:
    done = await client.post(
        "/api/chat", json={"message": text, "session_id": session_id, "options": reply(answer)}
    )
    assert done.status_code == 200, done.text


async def once_free(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    """POST /api/chat until the session is no longer busy (a cancel on another replica takes
    a moment to end the stream there), as a client following Retry-After would."""
    for _ in range(400):
        response = await client.post("/api/chat", json=payload)
        if response.status_code != 409:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("the session stayed busy")


def assert_busy(response: httpx.Response, stream_id: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["code"] == "SESSION_BUSY" and error["retryable"] is True
    assert error["details"]["stream_id"] == stream_id
    assert error["details"]["cancel"] == f"POST /api/streams/{stream_id}/cancel"
    assert response.headers["retry-after"] == "1"


async def test_a_second_turn_while_one_runs_is_409_on_every_route(live_server: Any) -> None:
    async with (
        live_server(disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await chat(client, "busy-a", "q1", "a1")
        stream_id = await running(
            client, "/api/chat/stream", {"message": "q2", "session_id": "busy-a", "options": STALL}
        )
        first_user = (await client.get("/api/sessions/busy-a")).json()["messages"][0]["id"]
        ask = {"message": "x", "session_id": "busy-a"}
        attempts = {
            "POST /api/chat/stream": await client.post("/api/chat/stream", json=ask),
            "GET /api/chat/stream": await client.get("/api/chat/stream", params=ask),
            "POST /api/chat": await client.post("/api/chat", json=ask),
            "POST /api/ui/chat": await client.post("/api/ui/chat", json=ui_body("busy-a", "x")),
            "regenerate": await client.post("/api/sessions/busy-a/regenerate", json={}),
            "edit": await client.post(
                f"/api/sessions/busy-a/messages/{first_user}/edit", json={"message": "x"}
            ),
        }
        for route, response in attempts.items():
            assert response.status_code == 409, route
            assert_busy(response, stream_id)
        cancelled = await client.post(f"/api/streams/{stream_id}/cancel")
        after = await client.post("/api/chat", json={**ask, "message": "q3"})
        info = (await client.get("/api/sessions/busy-a")).json()
    assert cancelled.json()["cancelled"] is True
    assert after.status_code == 200  # the cancel on this replica ended the turn: free at once
    messages = info["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3  # never interleaved
    assert [m["content"] for m in messages if m["role"] == "user"] == ["q1", "q2", "q3"]
    partial = messages[3]["content"]
    assert (
        messages[3]["status"] == "interrupted" and partial and "one two three".startswith(partial)
    )


async def test_the_ui_regenerate_stops_the_running_answer_instead(live_server: Any) -> None:
    """useChat's regenerate replaces the answer being written (kept as a version): the one
    route where a running turn is stopped rather than refused."""
    async with (
        live_server(disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        stream_id = await running(client, "/api/ui/chat", ui_body("busy-u", "q", options=STALL))
        again = {**ui_body("busy-u", "q", options=reply("new")), "trigger": "regenerate-message"}
        response = await client.post("/api/ui/chat", json=again)
        info = (await client.get("/api/sessions/busy-u")).json()
    assert response.status_code == 200 and text_of(chunks_of(response.text)) == "new"
    old, new = info["messages"][1], info["messages"][2]
    assert old["metadata"]["stream_id"] == stream_id and old["superseded"]
    assert old["status"] == "interrupted" and new["versions"] == [old["id"]]


async def test_the_ui_edit_stops_the_running_answer_too(live_server: Any) -> None:
    """useChat's edit (`submit-message` with the `messageId` of the message being answered)
    replaces the answer being written, like its regenerate."""
    async with (
        live_server(disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        stream_id = await running(client, "/api/ui/chat", ui_body("busy-e", "q", options=STALL))
        edit = {**ui_body("busy-e", "q'", options=reply("new")), "messageId": "u1"}
        response = await client.post("/api/ui/chat", json=edit)
        info = (await client.get("/api/sessions/busy-e")).json()
    assert response.status_code == 200 and text_of(chunks_of(response.text)) == "new"
    marks = [(m["role"], m["superseded"]) for m in info["messages"]]
    assert marks == [("user", True), ("assistant", True), ("user", False), ("assistant", False)]
    assert [m["content"] for m in info["messages"][2:]] == ["q'", "new"]
    assert info["messages"][1]["metadata"]["stream_id"] == stream_id
    assert info["messages"][1]["status"] == "interrupted"


async def test_one_turn_at_a_time_across_two_replicas(
    live_server: Any, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    """The claim is a conditional update in the shared PostgreSQL; whether its stream still
    runs is read from the shared Redis log: a turn on replica two while replica one answers
    is refused; a cancel from replica two frees the session once the stream has ended."""
    shared = {**redis_settings, **postgres_settings, "disconnect_grace_s": 30}
    async with (
        live_server(**shared) as one,
        live_server(**shared) as two,
        httpx.AsyncClient(base_url=one.url, timeout=30) as first,
        httpx.AsyncClient(base_url=two.url, timeout=30) as second,
    ):
        ask = {"message": "q1", "session_id": "busy-b", "options": STALL}
        stream_id = await running(first, "/api/chat/stream", ask)
        assert_busy(await second.post("/api/chat/stream", json={**ask, "message": "x"}), stream_id)
        assert_busy(await second.post("/api/sessions/busy-b/regenerate", json={}), stream_id)
        cancelled = await second.post(f"/api/streams/{stream_id}/cancel")
        after = await once_free(second, {"message": "q2", "session_id": "busy-b"})
        info = (await first.get("/api/sessions/busy-b")).json()
    assert cancelled.json()["cancelled"] is True and after.status_code == 200
    assert [m["role"] for m in info["messages"]] == ["user", "assistant"] * 2
    assert [m["content"] for m in info["messages"] if m["role"] == "user"] == ["q1", "q2"]


async def _try_turn(client: httpx.AsyncClient, payload: dict[str, Any]) -> tuple[int, Any]:
    async with client.stream("POST", "/api/chat/stream", json=payload) as response:
        if response.status_code != 200:
            return response.status_code, (await response.aread())
        raw = ""
        async for piece in response.aiter_text():
            raw += piece
            if '"metadata"' in raw[: raw.rfind("\n\n") + 1]:
                break
    frames = [f for f in parse_frames(raw[: raw.rfind("\n\n") + 2]) if f.data]
    return 200, frames[0].json["stream_id"]


async def test_two_turns_at_once_on_two_replicas_one_is_refused(
    live_server: Any, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    """Both may pass the route's check before either has claimed: the store's conditional
    update lets one through, and the other's stream ends before its first event, which is
    its HTTP status (409)."""
    shared = {**redis_settings, **postgres_settings, "disconnect_grace_s": 30}
    async with (
        live_server(**shared) as one,
        live_server(**shared) as two,
        httpx.AsyncClient(base_url=one.url, timeout=30) as first,
        httpx.AsyncClient(base_url=two.url, timeout=30) as second,
    ):
        await chat(first, "race-b", "q0", "a0")
        ask = {"message": "q1", "session_id": "race-b", "options": STALL}
        results = await asyncio.gather(_try_turn(first, ask), _try_turn(second, ask))
        winner = next(found for status, found in results if status == 200)
        await first.post(f"/api/streams/{winner}/cancel")
        info = (await first.get("/api/sessions/race-b")).json()
    assert sorted(status for status, _ in results) == [200, 409]
    assert [m["content"] for m in info["messages"] if m["role"] == "user"] == ["q0", "q1"]


async def test_two_turns_at_once_on_one_replica_one_is_refused(live_server: Any) -> None:
    async with (
        live_server(disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        ask = {"message": "q1", "session_id": "race-a", "options": STALL}
        results = await asyncio.gather(*(_try_turn(client, ask) for _ in range(3)))
        for status, found in results:
            if status == 200:
                await client.post(f"/api/streams/{found}/cancel")
        info = (await client.get("/api/sessions/race-a")).json()
    assert sorted(status for status, _ in results) == [200, 409, 409]
    assert [m["role"] for m in info["messages"]] == ["user", "assistant"]


async def test_a_turn_with_tool_rounds_frees_the_session_at_its_end(live_server: Any) -> None:
    """A tool round stores part of the answer without ending the turn; the turn's end does."""
    tools = {
        "scripted": {
            "tool_calls": [{"name": "calculate", "arguments": {"expression": "2+2"}}],
            "reply": "4",
        }
    }
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        first = await client.post(
            "/api/chat", json={"message": "2+2?", "session_id": "tools-1", "options": tools}
        )
        second = await client.post("/api/chat", json={"message": "and?", "session_id": "tools-1"})
        regen = await client.post("/api/sessions/tools-1/regenerate", json={})
        info = (await client.get("/api/sessions/tools-1")).json()
    assert first.status_code == 200 and first.json()["content"] == "4"
    assert second.status_code == 200 and regen.status_code == 200
    roles = [(m["role"], m["superseded"]) for m in info["messages"]]
    assert roles == [
        ("user", False),
        ("assistant", False),
        ("tool", False),
        ("assistant", False),
        ("user", False),
        ("assistant", True),
        ("assistant", False),
    ]


async def test_a_claim_whose_turn_is_gone_does_not_lock_the_session(live_server: Any) -> None:
    """Crash safety on one process: a claim left by a dead replica (no heartbeat), or by this
    replica for a stream it no longer runs (its end could not be stored), is taken over."""
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        services = services_of(srv)
        for session_id, replica in (("gone-1", "dead-replica"), ("gone-2", services.replica_id)):
            await services.sessions.start_turn(
                session_id, "q1", create=True, stream_id="ghost", replica_id=replica
            )
            held = await services.sessions.running_turn(session_id, stale_after_s=60)
            assert held is not None and held.stream_id == "ghost"
            after = await client.post("/api/chat", json={"message": "q2", "session_id": session_id})
            assert after.status_code == 200, after.text
            held = await services.sessions.running_turn(session_id, stale_after_s=60)
            assert held is None  # the new turn took the claim, and its end released it
        sent = scripted(srv).last_request
    assert sent is not None
    assert [m.content for m in sent.messages if m.role != "system"] == ["q1", "q2"]


async def test_a_live_replicas_claim_on_a_stream_the_log_forgot_is_taken_over(
    live_server: Any, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    async with (
        live_server(**redis_settings, **postgres_settings) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        sessions = services_of(srv).sessions
        await sessions.beat("other-replica")  # alive, but its stream is not in the log
        await sessions.start_turn(
            "gone-3", "q1", create=True, stream_id="forgotten", replica_id="other-replica"
        )
        held = await sessions.running_turn("gone-3", stale_after_s=60)
        assert held is not None and held.replica_alive
        after = await client.post("/api/chat", json={"message": "q2", "session_id": "gone-3"})
    assert after.status_code == 200, after.text


async def test_regenerate_and_edit_keep_versions_the_model_never_sees(live_server: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        await chat(client, "turns-1", "q1", "a1")
        await chat(client, "turns-1", "q2", "a2")
        regen = await stream(
            srv.url,
            "POST",
            "/api/sessions/turns-1/regenerate",
            json={"options": reply("a2, again")},
        )
        sent_regen = scripted(srv).last_request
        after_regen = (await client.get("/api/sessions/turns-1")).json()["messages"]
        q1 = after_regen[0]["id"]
        edited = await stream(
            srv.url,
            "POST",
            f"/api/sessions/turns-1/messages/{q1}/edit",
            json={"message": "q1, better", "options": reply("b1")},
        )
        sent_edit = scripted(srv).last_request
        await chat(client, "turns-1", "q3", "b3")
        sent_next = scripted(srv).last_request
        final = (await client.get("/api/sessions/turns-1")).json()["messages"]
    assert regen.response.status_code == 200 and regen.text == "a2, again"
    assert regen.types[0] == "metadata" and regen.types[-1] == "done"
    assert regen.events[0].json["message_id"] == after_regen[4]["id"]
    assert [(m["content"], m["superseded"]) for m in after_regen] == [
        ("q1", False),
        ("a1", False),
        ("q2", False),
        ("a2", True),
        ("a2, again", False),
    ]
    assert after_regen[3]["metadata"]["superseded_by"] == after_regen[4]["id"]
    assert after_regen[4]["versions"] == [after_regen[3]["id"]]
    assert edited.text == "b1"

    def seen(request: Any) -> list[str]:
        return [m.content for m in request.messages if m.role != "system"]

    assert seen(sent_regen) == ["q1", "a1", "q2"]
    assert seen(sent_edit) == ["q1, better"]
    assert seen(sent_next) == ["q1, better", "b1", "q3"]
    current = [m["content"] for m in final if not m["superseded"]]
    assert current == ["q1, better", "b1", "q3", "b3"]
    assert all(m["superseded"] for m in final[:5])  # the whole old branch, kept
    new_q1 = next(m for m in final if m["content"] == "q1, better")
    assert new_q1["versions"] == [q1] and new_q1["metadata"]["edit_of"] == q1


async def test_regenerate_and_edit_errors(live_server: Any) -> None:
    async with (
        live_server(api_keys=KEYS) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        made = await client.post(
            "/api/chat", json={"message": "secret", "session_id": "keyed"}, headers=ALICE
        )
        messages = (await client.get("/api/sessions/keyed", headers=ALICE)).json()["messages"]
        user, answer = messages[0]["id"], messages[1]["id"]
        edit = "/api/sessions/keyed/messages/{}/edit"
        results = {
            "bob regenerates": await client.post(
                "/api/sessions/keyed/regenerate", json={}, headers=BOB
            ),
            "bob edits": await client.post(edit.format(user), json={"message": "x"}, headers=BOB),
            "unknown session": await client.post(
                "/api/sessions/nope/regenerate", json={}, headers=ALICE
            ),
            "an answer": await client.post(
                edit.format(answer), json={"message": "x"}, headers=ALICE
            ),
            "empty text": await client.post(
                edit.format(user), json={"message": "  "}, headers=ALICE
            ),
            "unknown field": await client.post(
                "/api/sessions/keyed/regenerate", json={"mesage": "x"}, headers=ALICE
            ),
        }
    assert made.status_code == 200
    codes = {name: (r.status_code, r.json()["code"]) for name, r in results.items()}
    assert codes == {
        "bob regenerates": (404, "SESSION_NOT_FOUND"),
        "bob edits": (404, "SESSION_NOT_FOUND"),
        "unknown session": (404, "SESSION_NOT_FOUND"),
        "an answer": (422, "VALIDATION_ERROR"),
        "empty text": (422, "VALIDATION_ERROR"),
        "unknown field": (422, "VALIDATION_ERROR"),
    }
    assert "secret" not in results["bob edits"].text


async def test_the_python_client_regenerates_edits_and_reports_busy(live_server: Any) -> None:
    async with (
        live_server(disconnect_grace_s=30) as srv,
        AsyncClient(srv.url) as client,
    ):
        first = await client.chat("q1", session_id="py-1", options=reply("a1"))
        again = await client.regenerate("py-1", options=reply("a1, again"))
        session = await client.session("py-1")
        q1 = session["messages"][0]["id"]
        events = [e.type async for e in client.stream_edit("py-1", q1, "q1'", options=reply("b"))]
        edited = (await client.session("py-1"))["messages"]
        running_stream = client.stream_chat("q2", session_id="py-1", options=STALL)
        async for event in running_stream:
            if event.type == "token":
                break
        with pytest.raises(SessionBusyError) as busy:
            await client.chat("q3", session_id="py-1")
        await running_stream.cancel()
        await running_stream.aclose()

        def sync_use(url: str) -> str:
            with Client(url) as sync:
                return sync.regenerate("py-1", options=reply("sync")).content

        # the cancelled turn ended on this replica: the session is free again
        sync_content = await asyncio.to_thread(sync_use, srv.url)
    assert first.content == "a1" and again.content == "a1, again"
    assert again.session_id == "py-1" and again.message_id != first.message_id
    assert [m["superseded"] for m in session["messages"]] == [False, True, False]
    assert events[0] == "metadata" and events[-1] == "done"
    assert [m["content"] for m in edited if not m["superseded"]] == ["q1'", "b"]
    assert busy.value.status == 409 and busy.value.retryable
    assert busy.value.running_stream_id == running_stream.stream_id
    assert sync_content == "sync"


async def test_regenerate_and_edit_bodies_take_camel_case(live_server: Any) -> None:
    """The request contract (issue #23): every field in both spellings, as for chat."""
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        await chat(client, "camel-1", "q1", "a1")
        regen = await stream(
            srv.url,
            "POST",
            "/api/sessions/camel-1/regenerate",
            json={"eventNames": False, "options": {"maxTokens": 50, **reply("again")}},
        )
        q1 = (await client.get("/api/sessions/camel-1")).json()["messages"][0]["id"]
        both = await client.post(
            f"/api/sessions/camel-1/messages/{q1}/edit",
            json={"message": "x", "eventNames": False, "event_names": False},
        )
    assert regen.text == "again" and all(f.event is None for f in regen.events)
    assert both.status_code == 422
