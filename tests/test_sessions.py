"""Sessions in a real SQLite file: persistence across restarts, history, deletion."""

from __future__ import annotations

import httpx

from tests.helpers import chat_stream
from tokenrelay.sessions.base import StoredMessage
from tokenrelay.sessions.history import build_messages, estimate_tokens, fit_history


async def test_session_survives_a_server_restart(live_server) -> None:
    async with live_server() as srv:
        first = await chat_stream(srv.url, {"message": "첫 번째 질문입니다"})
    session_id = first.last()["session_id"]
    assert srv.settings.sqlite_path.exists()

    async with live_server() as srv2:  # same data dir, new process state
        async with httpx.AsyncClient(base_url=srv2.url) as client:
            before = (await client.get(f"/api/sessions/{session_id}")).json()
        second = await chat_stream(
            srv2.url, {"message": "second question", "session_id": session_id}
        )
        async with httpx.AsyncClient(base_url=srv2.url) as client:
            after = (await client.get(f"/api/sessions/{session_id}")).json()
            listed = (await client.get("/api/sessions")).json()["sessions"]

    assert [m["content"] for m in before["messages"]] == ["첫 번째 질문입니다", first.text]
    assert [m["status"] for m in before["messages"]] == ["complete", "complete"]
    done = second.last()
    assert done["session_id"] == session_id
    assert done["history_length"] == 4
    # the model saw the first turn too: more prompt words than the first turn alone
    assert done["usage"]["prompt_tokens"] > first.last()["usage"]["prompt_tokens"]
    assert [m["role"] for m in after["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [s["id"] for s in listed] == [session_id]
    assert listed[0]["message_count"] == 4


async def test_delete_session(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        result = await chat_stream(srv.url, {"message": "hi"})
        session_id = result.last()["session_id"]
        deleted = await client.delete(f"/api/sessions/{session_id}")
        gone = await client.get(f"/api/sessions/{session_id}")
        again = await client.post("/api/chat", json={"message": "x", "session_id": session_id})
    assert deleted.status_code == 204
    assert gone.status_code == 404
    # the id is free again: a turn on it starts a new, empty session (client-chosen ids)
    assert again.status_code == 200 and again.json()["history_length"] == 2


def _msg(role: str, content: str, status: str = "complete") -> StoredMessage:
    return StoredMessage(
        id=content,
        session_id="s",
        role=role,
        content=content,
        status=status,
        created_at=0,  # type: ignore[arg-type]
    )


def test_history_fits_the_budget_from_the_most_recent_turn() -> None:
    history = [
        _msg("user", f"question {i} " * 10)
        if i % 2 == 0
        else _msg("assistant", f"answer {i} " * 10)
        for i in range(20)
    ]
    budget = estimate_tokens(history[-1].content) * 5
    picked = fit_history(history, budget)
    assert picked, "some history fits"
    assert picked[-1].content == history[-1].content
    assert picked[0].role == "user"  # never starts mid-turn
    assert sum(estimate_tokens(m.content) for m in picked) <= budget


def test_history_skips_placeholders_and_empty_failures() -> None:
    history = [
        _msg("user", "a"),
        _msg("assistant", "", status="failed"),
        _msg("user", "b"),
        _msg("assistant", "partial", status="interrupted"),
        _msg("user", "c"),
        _msg("assistant", "", status="streaming"),
    ]
    assert [m.content for m in fit_history(history, 10_000)] == ["a", "b", "partial", "c"]


def test_build_messages_puts_system_history_then_question() -> None:
    messages = build_messages("be brief", [_msg("user", "a"), _msg("assistant", "b")], "c", 1000)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "be brief"),
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c"),
    ]
    assert [m.role for m in build_messages("", [_msg("user", "a" * 9000)], "c", 100)] == ["user"]


def test_korean_is_estimated_more_generously_than_english() -> None:
    assert estimate_tokens("경복궁") > estimate_tokens("abc")
