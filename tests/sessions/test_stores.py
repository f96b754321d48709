"""The same contract on both session stores: real SQLite and real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.helpers import chat_stream
from tokenrelay.errors import BackendUnavailable, SessionNotFound
from tokenrelay.sessions.base import SessionStore


async def test_turns_history_and_status(store: SessionStore) -> None:
    first = await store.start_turn(None, "안녕하세요", owner="alice")
    count = await store.finish_turn(
        first.assistant_message_id, "반갑습니다", "complete", {"usage": {"prompt_tokens": 3}}
    )
    assert count == 2
    second = await store.start_turn(first.session_id, "and then?", owner="alice")
    assert [m.content for m in second.history] == ["안녕하세요", "반갑습니다"]
    assert second.history[1].metadata == {"usage": {"prompt_tokens": 3}}
    await store.finish_turn(second.assistant_message_id, "partial", "interrupted")
    messages = await store.messages(first.session_id)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "interrupted"),
    ]
    tool_id = await store.add_message(
        first.session_id, "tool", '{"temp": 3}', metadata={"call_id": "c1", "tool": "weather"}
    )
    assert tool_id
    info = await store.get_session(first.session_id, owner="alice")
    assert info is not None and info.message_count == 5 and info.owner == "alice"


async def test_ownership_and_deletion(store: SessionStore) -> None:
    turn = await store.start_turn(None, "mine", owner="alice")
    assert await store.get_session(turn.session_id, owner="bob") is None
    assert await store.get_session(turn.session_id) is None  # no owner ≠ alice
    assert [s.id for s in await store.list_sessions(owner="alice")] == [turn.session_id]
    assert await store.list_sessions(owner="bob") == []
    with pytest.raises(SessionNotFound):
        await store.start_turn(turn.session_id, "hijack", owner="bob")
    assert not await store.delete_session(turn.session_id, owner="bob")
    assert await store.delete_session(turn.session_id, owner="alice")
    assert await store.messages(turn.session_id) == []
    with pytest.raises(SessionNotFound):
        await store.start_turn("nope", "x")


async def test_unreachable_postgres_is_a_clear_backend_error() -> None:
    from tokenrelay.sessions.postgres import PostgresSessionStore

    with pytest.raises(BackendUnavailable) as info:
        await PostgresSessionStore.open("postgresql://postgres@127.0.0.1:1/test")
    assert "TOKENRELAY_DATABASE_URL" in info.value.details["operator"]
    assert "TOKENRELAY" not in info.value.suggestion


async def test_the_app_on_postgres_and_redis(
    live_server, postgres_settings, redis_settings
) -> None:
    async with live_server(**postgres_settings, **redis_settings) as srv:
        first = await chat_stream(srv.url, {"message": "첫 질문"})
    async with live_server(**postgres_settings, **redis_settings) as srv:
        second = await chat_stream(
            srv.url, {"message": "둘째 질문", "session_id": first.last()["session_id"]}
        )
    assert second.last()["history_length"] == 4
