"""Session storage protocol and records.

A turn is written in two steps: `start_turn` stores the user's message and a placeholder for
the answer (status `streaming`) in one transaction; `finish_turn` stores the answer with its
final status: `complete`, `interrupted` (cancelled, timed out, disconnected) or `failed`.

Crash recovery (sessions/recovery.py): a placeholder records its stream and the replica (the
process) generating it; each replica keeps a heartbeat row; an answer left `streaming` by a
replica whose heartbeat has stopped is an orphan, and becomes `interrupted` with the longest
text there is (the stream log's, else the placeholder's last checkpoint).

Session ids may be chosen by the client (`SESSION_ID_RULE`): a turn with `create=True` on an
unknown id creates the session, owned by the caller's key; an id another key owns is
SESSION_NOT_FOUND, as if it did not exist. Each session records its latest stream
(`active_stream_id`, set by every turn), so that any replica can find the answer being
generated for a chat (`GET /api/ui/chat/{id}/stream`). A regenerated answer stays stored,
marked `superseded` in its metadata (`is_superseded`); the model never sees it again.

One turn at a time per session (docs/protocol.md, SESSION_BUSY): a turn with a stream claims
the session in the same transaction that writes its first rows, by a conditional update of the
session's `turn_stream_id` (and `turn_replica_id`, the process generating it) that succeeds only
when no turn holds it, or when the holder is the stale stream the caller names (`takeover`).
The claim ends with the turn's last `finish_turn` (`ends_turn`), a stop
(`clear_active_stream`) or a crash recovery (`interrupt`). Whether a holder is stale (its
replica dead, its stream ended or gone from the log) is decided by the route before the turn
(server/turn_guard.py, with `running_turn`); the store's condition keeps the claim atomic
across replicas. An edit (`start_edit`) and a regenerate supersede the messages they replace,
each marked with `superseded_by`, the id of the message that took their place, so the earlier
versions can be read back (sessions/versions.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from tokenrelay.errors import SessionBusy, SessionNotFound, ValidationError
from tokenrelay.i18n import tr


class _RandomIds:
    """The random part of ids (80 bits each) from the OS's CSPRNG, made 256 at a time.

    Five ids are made per stream (stream, trace, session, two messages), and each
    `os.urandom` is a `getrandom` system call, which showed in the server's profile under
    unpaced load (docs/benchmarks.md). The bytes are the same;
    only the calls are fewer. No lock: `next()` on a list iterator is one step under the GIL,
    so threads (session stores make ids on their workers) never get the same id, and two that
    refill at once just make two batches. A forked child drops its batch, so parent and
    child never share ids.
    """

    BATCH = 256
    BYTES = 10

    def __init__(self) -> None:
        self._next: Iterator[str] = iter(())
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._next = iter(())

    def take(self) -> str:
        try:
            return next(self._next)
        except StopIteration:
            size = self.BYTES
            pool = os.urandom(size * self.BATCH)
            ids = [pool[i : i + size].hex() for i in range(0, len(pool), size)]
            self._next = iter(ids[1:])
            return ids[0]


_ids = _RandomIds()


def new_id() -> str:
    """A 128-bit id as 32 hex digits: the time in milliseconds (48 bits, as in a UUIDv7),
    then 80 random bits (`_RandomIds`).

    Why time first: sessions and messages are B-tree keys by id. Random ids put every new
    row's index entries on a page of their own, so each commit wrote one page per id; ids
    that grow with time append to the same last pages, which a group of writes shares
    (docs/benchmarks.md). 80 random bits keep ids unguessable."""
    return f"{time.time_ns() // 1_000_000:012x}{_ids.take()}"


def dump_metadata(metadata: dict[str, Any] | None) -> str:
    """Compact JSON, non-ASCII as is (orjson: a fifth of `json.dumps`, twice per turn)."""
    return orjson.dumps(metadata or {}, option=orjson.OPT_NON_STR_KEYS).decode()


SESSION_ID_RULE = "1 to 128 characters from A-Z, a-z, 0-9, '_' and '-'"
"""Client-chosen session ids (server/schemas.py ID_PATTERN), as the docs state it."""


def is_superseded(message: StoredMessage) -> bool:
    """A message of an answer that a regenerated one replaced: kept, never sent to the model."""
    return bool(message.metadata.get("superseded"))


def nothing_to_regenerate(session_id: str) -> ValidationError:
    return ValidationError(
        tr("session {session_id!r} has no user message to answer again", session_id=session_id),
        suggestion=tr("send a message first; regenerate answers the last one again"),
    )


def not_editable(session_id: str, message_id: str, *, param: str | None = None) -> ValidationError:
    """VALIDATION_ERROR: `message_id` names no current user message (`param`: the request's
    field that named it, in `details`)."""
    return ValidationError(
        tr(
            "message {message_id!r} is not a user message of session {session_id!r} that can"
            " be edited",
            message_id=message_id,
            session_id=session_id,
        ),
        suggestion=tr("edit one of the conversation's current messages of yours"),
        details={"param": param} if param else None,
    )


def session_busy(session_id: str, stream_id: str | None) -> SessionBusy:
    """The one SESSION_BUSY: the session's previous turn (stream `stream_id`) still runs."""
    return SessionBusy(
        tr(
            "session {session_id!r} is still answering its previous message",
            session_id=session_id,
        ),
        suggestion=tr("wait for that answer to end, or stop it; then send again"),
        retry_after_s=1,
        details={
            "session_id": session_id,
            "stream_id": stream_id,
            # for the client's code, not its user: how to follow or stop the running answer
            "follow": f"GET /api/streams/{stream_id}",
            "cancel": f"POST /api/streams/{stream_id}/cancel",
        },
    )


def session_not_found(session_id: str) -> SessionNotFound:
    """The one SESSION_NOT_FOUND, whichever store or route finds the session missing."""
    return SessionNotFound(
        tr("no session {session_id!r}", session_id=session_id),
        suggestion=tr("start a new conversation, or choose one of yours (GET /api/sessions)"),
    )


MessageStatus = Literal["complete", "streaming", "interrupted", "failed"]
StoredRole = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    session_id: str
    role: StoredRole
    content: str
    status: MessageStatus
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: float
    updated_at: float
    title: str | None
    owner: str | None
    message_count: int
    active_stream_id: str | None = None  # the stream of the session's latest turn


@dataclass(frozen=True, slots=True)
class RunningTurn:
    """The turn that holds a session's claim: its stream, the replica generating it, and
    whether that replica's heartbeat is fresh (sessions/recovery.py)."""

    stream_id: str
    replica_id: str | None
    replica_alive: bool


@dataclass(frozen=True, slots=True)
class TurnStart:
    session_id: str
    user_message_id: str
    assistant_message_id: str
    history: list[StoredMessage]  # messages before this turn, oldest first


def plan_new_session() -> TurnStart:
    """The ids of a first turn, before anything is written: a new session has no history to
    read, so its answer can start while `start_turn(None, ..., planned=...)` writes them."""
    return TurnStart(new_id(), new_id(), new_id(), [])


def turn_ids(session_id: str | None, planned: TurnStart | None) -> tuple[str, str, str]:
    """(session, user message, answer) ids of a turn that `start_turn` writes: those of
    `planned` for a new session planned ahead, new ones otherwise."""
    if session_id is None and planned is not None:
        return planned.session_id, planned.user_message_id, planned.assistant_message_id
    return session_id or new_id(), new_id(), new_id()


@dataclass(frozen=True, slots=True)
class Orphan:
    """An answer left `streaming` by a replica that is gone: its text so far is `content`
    (the last checkpoint), its stream `stream_id` (None for rows older than the column)."""

    message_id: str
    stream_id: str | None
    content: str


class SessionStore(Protocol):
    # True when writes land in the order of the calls to `start_turn`, `finish_turn` (one
    # connection, one queue, as in sessions/sqlite.py): a turn may then queue its answer's
    # write before its first write has landed, and the two share a commit. False where writes
    # run side by side (a pool) or a call may wait before its write is queued.
    writes_in_order: bool

    def start_turn(
        self,
        session_id: str | None,
        user_text: str,
        *,
        owner: str | None = None,
        planned: TurnStart | None = None,
        stream_id: str | None = None,
        replica_id: str | None = None,
        create: bool = False,
        takeover: str | None = None,
        user_metadata: dict[str, Any] | None = None,
    ) -> Awaitable[TurnStart]:
        """Create the session when `session_id` is None (with the ids of `planned` when given);
        raise SessionNotFound if unknown, unless `create` (a client-chosen id: then it is made,
        owned by `owner`), and if another owner's. With `writes_in_order`, the write is queued
        by the call itself, before any await. The answer's placeholder records `stream_id` and
        `replica_id` (the process generating it), for crash recovery; the session records
        `stream_id` as its `active_stream_id`. With a `stream_id`, the turn claims the session
        (module doc): SessionBusy when another turn holds it, unless that one is `takeover`.
        `user_metadata`: the user message's metadata (e.g. `ui_id`, the id a `useChat` client
        gave it)."""
        ...

    async def start_regenerate(
        self,
        session_id: str,
        *,
        owner: str | None = None,
        stream_id: str | None = None,
        replica_id: str | None = None,
        takeover: str | None = None,
    ) -> tuple[TurnStart, str]:
        """A new answer to the session's last user message, in one transaction: the messages
        after it (the old answer, its tool rounds) are marked superseded, a new placeholder is
        added. Returns the turn (its `history` ends before that user message, its
        `user_message_id` is that message's) and the user message's text. SessionNotFound and
        SessionBusy as `start_turn`; ValidationError when the session has no user message."""
        ...

    async def start_edit(
        self,
        session_id: str,
        message_id: str,
        user_text: str,
        *,
        owner: str | None = None,
        stream_id: str | None = None,
        replica_id: str | None = None,
        takeover: str | None = None,
        user_metadata: dict[str, Any] | None = None,
    ) -> TurnStart:
        """The user message `message_id` said again as `user_text`, in one transaction: it and
        every message after it are marked superseded (kept, a branch the model never sees
        again), a new user message (metadata `edit_of`, with `user_metadata`) and a
        placeholder are added. The
        turn's `history` is what came before the edited message. SessionNotFound and
        SessionBusy as `start_turn`; ValidationError when `message_id` is not a current user
        message of the session."""
        ...

    async def running_turn(
        self, session_id: str, *, owner: str | None = None, stale_after_s: float
    ) -> RunningTurn | None:
        """The turn holding the session's claim, or None (no claim; unknown or another
        owner's session). Its replica is alive when its heartbeat is under `stale_after_s`
        seconds old."""
        ...

    async def claimable(self, session_id: str, *, owner: str | None = None) -> bool:
        """May `owner` use this id: the session is theirs, or no session has it yet."""
        ...

    async def clear_active_stream(self, session_id: str, stream_id: str) -> None:
        """The session has no active stream any more, if `stream_id` is still its latest; and
        no turn in progress, if `stream_id` holds its claim (the answer was stopped)."""
        ...

    async def add_message(
        self,
        session_id: str,
        role: StoredRole,
        content: str,
        *,
        status: MessageStatus = "complete",
        metadata: dict[str, Any] | None = None,
        stream_id: str | None = None,
        replica_id: str | None = None,
    ) -> str: ...

    def finish_turn(
        self,
        message_id: str,
        content: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None = None,
        *,
        ends_turn: bool = True,
    ) -> Awaitable[int]:
        """Store the answer; returns how many messages the session now holds. With
        `writes_in_order`, the write is queued by the call itself, before any await.
        `ends_turn`: the turn's claim on its session ends (False for a tool round's part of
        the answer, after which the turn goes on). An answer superseded meanwhile keeps its
        `superseded` and `superseded_by` marks."""
        ...

    async def get_session(
        self, session_id: str, *, owner: str | None = None
    ) -> SessionInfo | None: ...

    async def list_sessions(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SessionInfo]: ...

    async def messages(self, session_id: str) -> list[StoredMessage]: ...

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> bool: ...

    def checkpoint(self, message_id: str, content: str) -> Awaitable[None]:
        """The answer's text so far, written to its placeholder while it is still `streaming`
        (a no-op once the answer is finished), so that a crash keeps it."""
        ...

    async def beat(self, replica_id: str) -> None:
        """This replica is alive: upsert its heartbeat row (now)."""
        ...

    async def forget_replica(self, replica_id: str) -> None:
        """A clean shutdown: drop this replica's heartbeat row."""
        ...

    async def orphans(self, replica_id: str, *, stale_after_s: float | None) -> list[Orphan]:
        """Answers still `streaming` whose replica is dead, seen from `replica_id` (never its
        own): no replica recorded (older rows), no heartbeat row, or a heartbeat older than
        `stale_after_s` seconds; with None every other replica counts as dead (one process
        per database, at its start)."""
        ...

    async def prune_replicas(self, replica_id: str, *, stale_after_s: float | None) -> None:
        """Drop the heartbeat rows of dead replicas (as `orphans` judges them): every start
        makes a new replica id. A missing row counts as dead, so nothing changes verdict."""
        ...

    async def interrupt(self, message_id: str, content: str, reason: str) -> bool:
        """A `streaming` answer becomes `interrupted` with `content`, its metadata noting
        `"interrupted": reason`, and its turn's claim on the session ends; False (and nothing
        written) if it is no longer streaming."""
        ...

    def send_deferred(self) -> None:
        """Send now any write that is waiting for others to share its commit (a new session's
        first write, see sessions/sqlite.py): its caller has come to need it. A no-op for a
        store that does not defer."""
        ...

    async def aclose(self) -> None: ...
