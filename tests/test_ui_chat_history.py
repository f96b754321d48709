"""useChat's chat after a reload and its edits, on both session stores (SQLite, PostgreSQL):
`GET /api/ui/chat/{id}/messages` gives back the parts the live stream made (tools, each
call's last progress, the status, sources) in the same order, and `submit-message` with a
`messageId` edits that user message, named by the page's own id or by ours.

tests/test_ui_chat_node.py checks the same through the AI SDK (the live message rebuilt by
`readUIMessageStream` equals the one from `/messages`); here the stores and the exact parts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.test_ui_chat import SAMPLES, body, post_chat, text_of, user
from tokenrelay.server.ui_messages import to_ui_messages
from tokenrelay.sessions.base import StoredMessage


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for the session store: the default SQLite file, or PostgreSQL."""
    if request.param == "sqlite":
        return {}
    settings: dict[str, Any] = request.getfixturevalue("postgres_settings")
    return settings


def kinds(message: dict[str, Any]) -> list[str]:
    return [p["type"] for p in message["parts"]]


async def test_messages_give_back_what_the_stream_showed(
    live_server: Any, store: dict[str, Any]
) -> None:
    """Two tool rounds, the second stopped by `max_tool_rounds` with a status; sources."""
    calls = [
        {"name": "steps", "arguments": {"count": 3}},
        {"name": "boom", "arguments": {"reason": "disk on fire"}},
    ]
    options = {"rag": True, "scripted": {"tool_calls": calls, "tool_rounds": 3}}
    doc = {
        "title": "Palaces",
        "text": "Gyeongbokgung is the main royal palace of the Joseon dynasty in Seoul.",
        "source": "https://example.org/palaces",
    }
    async with (
        live_server(tool_modules=SAMPLES, max_tool_rounds=1, **store) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        assert (await client.post("/api/documents", json=doc)).status_code in (200, 201)
        _, chunks = await post_chat(client, body("hist-1", "Which palace?", options=options))
        loaded = (await client.get("/api/ui/chat/hist-1/messages")).json()["messages"]
    answer = loaded[1]
    assert answer["id"] == chunks[0]["messageId"]
    assert kinds(answer) == [
        *("step-start", "source-url", "tool-steps", "tool-boom", "data-tool-progress"),
        *("step-start", "tool-steps", "tool-boom", "data-status"),
    ]
    live = [c for c in chunks if c["type"].startswith("data-")]
    # the last of each data chunk (type, id) is the part the page kept
    last = {(c["type"], c["id"]): c for c in live}
    stored = [p for p in answer["parts"] if p["type"].startswith("data-")]
    assert stored == list(last.values())
    assert stored[0]["data"]["message"] == "step 3 of 3"
    # the second round's calls were refused by the limit: no progress of theirs
    assert "Stopped after 1 rounds" in stored[1]["data"]["message"]
    source = answer["parts"][1]
    assert source["url"] == "https://example.org/palaces"
    assert source == next(c for c in chunks if c["type"] == "source-url")


async def test_an_edit_names_the_message_by_the_pages_id_or_ours(
    live_server: Any, store: dict[str, Any]
) -> None:
    def said(text: str, reply: str, message_id: str, **extra: Any) -> dict[str, Any]:
        payload = body("hist-e", text, options={"scripted": {"reply": reply}}, **extra)
        return {**payload, "messages": [user(text, message_id)]}

    async with (
        live_server(**store) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await post_chat(client, said("q1", "a1", "page-1"))
        await post_chat(client, said("q2", "a2", "page-2"))
        # the page never loaded the chat: it names the message by the id it gave it
        _, chunks = await post_chat(client, said("q1'", "b1", "page-1", messageId="page-1"))
        first = (await client.get("/api/ui/chat/hist-e/messages")).json()["messages"]
        # after a reload the page holds our ids
        ours = first[0]["id"]
        _, again = await post_chat(client, said("q1''", "c1", ours, messageId=ours))
        second = (await client.get("/api/ui/chat/hist-e/messages")).json()["messages"]
        history = (await client.get("/api/sessions/hist-e")).json()["messages"]
        unknown, _ = await post_chat(
            client, said("x", "x", "nope", messageId="nope"), headers={"accept-language": "ko"}
        )
        no_chat, _ = await post_chat(
            client, {**said("x", "x", "p"), "id": "hist-none", "messageId": "p"}
        )
    assert text_of(chunks) == "b1" and text_of(again) == "c1"
    texts = [[p["text"] for p in m["parts"] if p["type"] == "text"] for m in first]
    assert texts == [["q1'"], ["b1"]]
    texts = [[p["text"] for p in m["parts"] if p["type"] == "text"] for m in second]
    assert texts == [["q1''"], ["c1"]]
    assert ours != "page-1"
    current = [m for m in history if not m["metadata"].get("superseded")]
    assert [m["content"] for m in current] == ["q1''", "c1"]
    assert current[0]["metadata"]["ui_id"] == ours  # the page now holds the message by ours
    assert current[0]["versions"]  # the earlier versions are kept
    assert unknown.status_code == 422
    error = unknown.json()
    assert error["code"] == "VALIDATION_ERROR" and error["details"] == {"param": "messageId"}
    assert "수정할 수 있는 사용자 메시지가 아닙니다" in error["message"]
    assert no_chat.status_code == 404 and no_chat.json()["code"] == "SESSION_NOT_FOUND"


def _stored(role: str, content: str = "", **metadata: Any) -> StoredMessage:
    return StoredMessage(
        id=f"m-{role}-{content}",
        session_id="s",
        role=role,  # type: ignore[arg-type]
        content=content,
        status="complete",
        created_at=0.0,
        metadata=metadata,
    )


def test_a_workflows_data_parts_follow_their_round() -> None:
    """Any data event the answer showed (a workflow's progress and result too) comes back
    after its round's parts, with its last value; one shown after the last round's output, in
    a round with nothing else, after everything."""
    progress = {"type": "progress", "step": "finalize", "message": "done", "progress": 95.0}
    complete = {"type": "complete", "result": {"title": "Paris"}}
    status = {"type": "status", "message": "ready"}
    shown = [
        {"round": 0, "event": progress},
        {"round": 1, "event": status},
        {"round": 2, "event": complete},
    ]
    call = {"id": "c1", "name": "steps", "arguments": {"count": 1}}
    messages = [
        _stored("user", "plan"),
        _stored("assistant", "first", tool_calls=[call]),
        _stored("tool", '{"steps": 1}', call_id="c1", tool="steps"),
        _stored("assistant", "second", shown=shown),
    ]
    answer = to_ui_messages(messages)[1]
    assert kinds(answer) == [
        *("step-start", "text", "tool-steps", "data-progress"),
        *("step-start", "text", "data-status", "data-complete"),
    ]
    value = {k: v for k, v in progress.items() if k != "type"}
    assert answer["parts"][3] == {"type": "data-progress", "id": "progress", "data": value}
    plan = {"type": "data-complete", "id": "complete", "data": {"title": "Paris"}}
    assert answer["parts"][-1] == plan


def test_an_answer_cut_short_keeps_what_its_finished_rounds_showed() -> None:
    """A crash after a tool round: the answer's last message never got its `shown` (recovered
    as interrupted), its tool round's message has what was shown until then."""
    progress = {"type": "tool_progress", "call_id": "c1", "tool": "steps", "message": "1 of 1"}
    call = {"id": "c1", "name": "steps", "arguments": {"count": 1}}
    messages = [
        _stored("user", "go"),
        _stored("assistant", "", tool_calls=[call], shown=[{"round": 0, "event": progress}]),
        _stored("tool", '{"steps": 1}', call_id="c1", tool="steps"),
        _stored("assistant", "partial", interrupted="replica_lost"),
    ]
    answer = to_ui_messages(messages)[1]
    assert kinds(answer) == [
        *("step-start", "tool-steps", "data-tool-progress"),
        *("step-start", "text"),
    ]
