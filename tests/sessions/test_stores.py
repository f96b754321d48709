"""The same contract on both session stores: real SQLite and real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.helpers import chat_stream
from tokenrelay.errors import BackendUnavailable, SessionBusy, SessionNotFound, ValidationError
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


async def test_client_chosen_ids_are_created_for_their_owner(store: SessionStore) -> None:
    """Issue #23: an id no session has is made by the first turn with `create`, owned by the
    caller; another owner's id is SESSION_NOT_FOUND, whether or not it exists."""
    assert await store.claimable("chat-123_abc", owner="alice")
    first = await store.start_turn(
        "chat-123_abc", "처음", owner="alice", stream_id="s1", create=True
    )
    assert first.session_id == "chat-123_abc" and first.history == []
    info = await store.get_session("chat-123_abc", owner="alice")
    assert info is not None and info.owner == "alice" and info.active_stream_id == "s1"
    assert info.title == "처음"
    await store.finish_turn(first.assistant_message_id, "네", "complete")
    again = await store.start_turn(
        "chat-123_abc", "again", owner="alice", stream_id="s2", create=True
    )
    assert [m.content for m in again.history] == ["처음", "네"]
    assert not await store.claimable("chat-123_abc", owner="bob")
    assert not await store.claimable("chat-123_abc")  # no key ≠ alice
    with pytest.raises(SessionNotFound):
        await store.start_turn("chat-123_abc", "hijack", owner="bob", create=True)
    with pytest.raises(SessionNotFound):
        await store.start_turn("never-made", "x", owner="alice")  # no `create`: unknown
    assert await store.get_session("never-made", owner="alice") is None
    info = await store.get_session("chat-123_abc", owner="alice")
    assert info is not None and info.active_stream_id == "s2" and info.message_count == 4


async def test_active_stream_is_cleared_only_while_it_is_the_latest(store: SessionStore) -> None:
    turn = await store.start_turn(None, "hi", owner="alice", stream_id="s1")
    info = await store.get_session(turn.session_id, owner="alice")
    assert info is not None and info.active_stream_id == "s1"
    await store.finish_turn(turn.assistant_message_id, "hello", "complete")
    await store.start_turn(turn.session_id, "next", owner="alice", stream_id="s2")
    await store.clear_active_stream(turn.session_id, "s1")  # an older stream: no change
    info = await store.get_session(turn.session_id, owner="alice")
    assert info is not None and info.active_stream_id == "s2"
    await store.clear_active_stream(turn.session_id, "s2")
    info = await store.get_session(turn.session_id, owner="alice")
    assert info is not None and info.active_stream_id is None


async def test_regenerate_supersedes_the_last_answer(store: SessionStore) -> None:
    from tokenrelay.sessions.base import is_superseded
    from tokenrelay.sessions.history import build_messages

    first = await store.start_turn("regen-1", "q1", owner="a", create=True)
    await store.finish_turn(first.assistant_message_id, "a1", "complete")
    second = await store.start_turn("regen-1", "q2", owner="a")
    await store.finish_turn(second.assistant_message_id, "a2 calls a tool", "complete")
    await store.add_message("regen-1", "tool", "{}", metadata={"call_id": "c", "tool": "t"})
    with pytest.raises(SessionNotFound):
        await store.start_regenerate("regen-1", owner="b")
    again, text = await store.start_regenerate("regen-1", owner="a", stream_id="s9")
    assert text == "q2" and again.user_message_id == second.user_message_id
    assert [m.content for m in again.history] == ["q1", "a1"]
    await store.finish_turn(again.assistant_message_id, "a2, again", "complete")
    stored = await store.messages("regen-1")
    kept = [(m.content, is_superseded(m)) for m in stored]
    assert kept == [
        ("q1", False),
        ("a1", False),
        ("q2", False),
        ("a2 calls a tool", True),
        ("{}", True),
        ("a2, again", False),
    ]
    later = await store.start_turn("regen-1", "q3", owner="a")
    sent = [m.content for m in build_messages("", later.history, "q3", 10_000)]
    assert sent == ["q1", "a1", "q2", "a2, again", "q3"]  # the old answer is never seen again
    info = await store.get_session("regen-1", owner="a")
    assert info is not None and info.active_stream_id == "s9"
    with pytest.raises(SessionNotFound):
        await store.start_regenerate("regen-3", owner="a")  # unknown: nothing is created
    assert await store.get_session("regen-3", owner="a") is None


async def test_an_answer_superseded_while_it_ran_stays_superseded(store: SessionStore) -> None:
    """A regenerate on one replica while the old answer still runs on another: the old one
    stores its end after being superseded, and keeps the mark."""
    from tokenrelay.sessions.base import is_superseded

    first = await store.start_turn("late-1", "q", owner="a", create=True, stream_id="s1")
    # the route stopped s1 to answer again: the regenerate takes its claim over
    await store.start_regenerate("late-1", owner="a", stream_id="s2", takeover="s1")
    await store.finish_turn(first.assistant_message_id, "partial", "interrupted", {"x": 1})
    old = next(m for m in await store.messages("late-1") if m.id == first.assistant_message_id)
    assert is_superseded(old) and old.metadata["x"] == 1 and old.content == "partial"


async def _claim(store: SessionStore, session_id: str) -> str | None:
    turn = await store.running_turn(session_id, owner="a", stale_after_s=60)
    return turn.stream_id if turn is not None else None


async def test_one_turn_at_a_time_claims_the_session(store: SessionStore) -> None:
    """Issue #23: a turn with a stream claims its session; a second one while it runs is
    SESSION_BUSY (naming the running stream), whichever way it starts; the claim ends with
    the turn's last write, not with a tool round's."""
    first = await store.start_turn("busy-1", "q1", owner="a", create=True, stream_id="s1")
    assert await _claim(store, "busy-1") == "s1"
    attempts = [
        store.start_turn("busy-1", "q2", owner="a", stream_id="s2"),
        store.start_turn("busy-1", "q2", owner="a", stream_id="s2", create=True),
        store.start_regenerate("busy-1", owner="a", stream_id="s2"),
        store.start_edit("busy-1", first.user_message_id, "q1'", owner="a", stream_id="s2"),
    ]
    for attempt in attempts:
        with pytest.raises(SessionBusy) as busy:
            await attempt
        assert busy.value.details["stream_id"] == "s1" and busy.value.retryable
        assert busy.value.details["cancel"] == "POST /api/streams/s1/cancel"
    with pytest.raises(SessionNotFound):  # another key's session stays a 404, busy or not
        await store.start_turn("busy-1", "x", owner="b", stream_id="s3", create=True)
    assert await store.running_turn("busy-1", owner="b", stale_after_s=60) is None
    await store.finish_turn(first.assistant_message_id, "a tool call", "complete", ends_turn=False)
    assert await _claim(store, "busy-1") == "s1"  # a tool round: the turn goes on
    last = await store.add_message("busy-1", "assistant", "", status="streaming", stream_id="s1")
    await store.finish_turn(last, "a1", "complete")
    assert await _claim(store, "busy-1") is None
    second = await store.start_turn("busy-1", "q2", owner="a", stream_id="s2")
    assert [m.content for m in second.history] == ["q1", "a tool call", "a1"]
    # a stale holder is replaced only when named; the store never guesses
    with pytest.raises(SessionBusy):
        await store.start_turn("busy-1", "q3", owner="a", stream_id="s3", takeover="s9")
    third = await store.start_turn("busy-1", "q3", owner="a", stream_id="s3", takeover="s2")
    assert await _claim(store, "busy-1") == "s3"
    await store.finish_turn(second.assistant_message_id, "late", "interrupted")
    assert await _claim(store, "busy-1") == "s3"  # the replaced turn's end releases nothing
    await store.clear_active_stream("busy-1", "s3")  # a stop ends the claim too
    assert await _claim(store, "busy-1") is None
    await store.finish_turn(third.assistant_message_id, "a3", "interrupted")


async def test_a_claim_knows_whether_its_replica_is_alive(store: SessionStore) -> None:
    """Crash safety: the claim names its replica, and the heartbeat says if it lives; the
    recovery sweep's `interrupt` of its answer ends the claim."""
    await store.beat("alive")
    turn = await store.start_turn(
        "crash-1", "q", owner="a", create=True, stream_id="s1", replica_id="gone"
    )
    held = await store.running_turn("crash-1", owner="a", stale_after_s=60)
    assert held is not None and held.replica_id == "gone" and not held.replica_alive
    await store.clear_active_stream("crash-1", "s1")
    await store.start_turn("crash-1", "q2", owner="a", stream_id="s2", replica_id="alive")
    held = await store.running_turn("crash-1", owner="a", stale_after_s=60)
    assert held is not None and held.replica_alive
    orphans = await store.orphans("sweeper", stale_after_s=60)
    assert [o.message_id for o in orphans] == [turn.assistant_message_id]  # s1's, not s2's
    last = next(
        m
        for m in await store.messages("crash-1")
        if m.status == "streaming" and m.id != turn.assistant_message_id
    )
    assert await store.interrupt(last.id, "", "replica_lost")
    assert await store.running_turn("crash-1", owner="a", stale_after_s=60) is None


async def test_edit_continues_from_the_edited_message(store: SessionStore) -> None:
    """An edit supersedes the edited message and everything after it (kept, marked with the
    message that replaced them); the model's history is what came before it."""
    from tokenrelay.sessions.history import build_messages

    one = await store.start_turn("edit-1", "q1", owner="a", create=True)
    await store.finish_turn(one.assistant_message_id, "a1", "complete")
    two = await store.start_turn("edit-1", "q2", owner="a")
    await store.finish_turn(two.assistant_message_id, "a2", "complete")
    with pytest.raises(ValidationError):
        await store.start_edit("edit-1", one.assistant_message_id, "x", owner="a")
    with pytest.raises(ValidationError):
        await store.start_edit("edit-1", "no-such-message", "x", owner="a")
    with pytest.raises(SessionNotFound):
        await store.start_edit("edit-1", one.user_message_id, "x", owner="b")
    edited = await store.start_edit("edit-1", one.user_message_id, "q1, better", owner="a")
    assert edited.history == []
    await store.finish_turn(edited.assistant_message_id, "a1'", "complete")
    stored = await store.messages("edit-1")
    marks = [(m.content, m.metadata.get("superseded_by")) for m in stored]
    new_user = edited.user_message_id
    assert marks == [
        ("q1", new_user),
        ("a1", new_user),
        ("q2", new_user),
        ("a2", new_user),
        ("q1, better", None),
        ("a1'", None),
    ]
    assert stored[4].metadata == {"edit_of": one.user_message_id}
    with pytest.raises(ValidationError):  # a superseded message is no longer editable
        await store.start_edit("edit-1", two.user_message_id, "x", owner="a")
    again, text = await store.start_regenerate("edit-1", owner="a", stream_id="s1")
    assert text == "q1, better" and [m.content for m in again.history] == []
    await store.finish_turn(again.assistant_message_id, "a1''", "complete")
    later = await store.start_turn("edit-1", "q3", owner="a")
    sent = [m.content for m in build_messages("", later.history, "q3", 10_000)]
    assert sent == ["q1, better", "a1''", "q3"]
    old = next(m for m in await store.messages("edit-1") if m.content == "a1'")
    assert old.metadata["superseded_by"] == again.assistant_message_id


async def test_a_user_messages_metadata_is_kept(store: SessionStore) -> None:
    """`user_metadata` (the id a useChat page gave the message, `ui_id`) on a new session's
    first turn, a later turn and an edit (with `edit_of`); an answer's `shown` events come back
    as they were written, in order."""
    planned = await store.start_turn(None, "q0", owner="a", user_metadata={"ui_id": "p0"})
    one = await store.start_turn(
        "meta-1", "q1", owner="a", create=True, user_metadata={"ui_id": "p1"}
    )
    shown = [
        {
            "round": 0,
            "event": {"type": "tool_progress", "call_id": "c", "tool": "t", "message": "2"},
        },
        {"round": 1, "event": {"type": "status", "message": "다 됐습니다"}},
    ]
    await store.finish_turn(one.assistant_message_id, "a1", "complete", {"shown": shown})
    two = await store.start_turn("meta-1", "q2", owner="a")
    await store.finish_turn(two.assistant_message_id, "a2", "complete")
    edited = await store.start_edit(
        "meta-1", one.user_message_id, "q1'", owner="a", user_metadata={"ui_id": "p1"}
    )
    first = await store.messages(planned.session_id)
    assert first[0].metadata == {"ui_id": "p0"}
    stored = {m.id: m for m in await store.messages("meta-1")}
    assert stored[one.user_message_id].metadata["ui_id"] == "p1"
    assert stored[one.assistant_message_id].metadata["shown"] == shown
    assert "ui_id" not in stored[two.user_message_id].metadata  # none given
    assert stored[edited.user_message_id].metadata == {
        "ui_id": "p1",
        "edit_of": one.user_message_id,
    }
