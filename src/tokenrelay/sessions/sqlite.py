"""Sessions in a SQLite file (the embedded default).

Every operation is one function run on the connection's own thread (`SqliteWorker`): a turn's
statements and its commit cost one thread hop, not one per statement as with aiosqlite — at a
thousand concurrent streams those hops queued behind the event loop (docs/benchmarks.md).
Schema changes are ordered migration functions; the applied count is kept per component in
`tokenrelay_migrations`, so other components can share the file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from tokenrelay.sessions.base import (
    MessageStatus,
    Orphan,
    RunningTurn,
    SessionInfo,
    StoredMessage,
    StoredRole,
    TurnStart,
    dump_metadata,
    is_superseded,
    new_id,
    not_editable,
    nothing_to_regenerate,
    session_busy,
    session_not_found,
    turn_ids,
)
from tokenrelay.sqlite_worker import SqliteWorker, write_transaction

Migration = Callable[[sqlite3.Connection], None]
T = TypeVar("T")


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one: `executescript` would commit the migration's transaction."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_sessions_and_messages(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            owner TEXT,
            title TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX sessions_owner_updated ON sessions(owner, updated_at DESC);
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX messages_session ON messages(session_id, seq);
        """,
    )


def _m002_answer_owners_and_replicas(db: sqlite3.Connection) -> None:
    """Crash recovery: the stream and replica of a `streaming` answer, the replicas'
    heartbeats. The partial index holds only the answers being written, so the sweep reads a
    handful of entries however long the history."""
    _script(
        db,
        """
        ALTER TABLE messages ADD COLUMN stream_id TEXT;
        ALTER TABLE messages ADD COLUMN replica_id TEXT;
        CREATE INDEX messages_streaming ON messages(replica_id) WHERE status = 'streaming';
        CREATE TABLE replicas (id TEXT PRIMARY KEY, seen_at REAL NOT NULL)
        """,
    )


def _m003_active_streams(db: sqlite3.Connection) -> None:
    """Each session's latest stream: where a chat's answer in progress is found (resume)."""
    db.execute("ALTER TABLE sessions ADD COLUMN active_stream_id TEXT")


def _m004_turn_claims(db: sqlite3.Connection) -> None:
    """One turn at a time per session: the stream holding the session's claim, and its
    replica (sessions/base.py)."""
    _script(
        db,
        """
        ALTER TABLE sessions ADD COLUMN turn_stream_id TEXT;
        ALTER TABLE sessions ADD COLUMN turn_replica_id TEXT
        """,
    )


MIGRATIONS: list[Migration] = [
    _m001_sessions_and_messages,
    _m002_answer_owners_and_replicas,
    _m003_active_streams,
    _m004_turn_claims,
]


def migrate(db: sqlite3.Connection, component: str, migrations: list[Migration]) -> int:
    """Apply the migrations of `component` not applied yet; returns the version reached."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS tokenrelay_migrations"
        " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = db.execute(
        "SELECT version FROM tokenrelay_migrations WHERE component = ?", (component,)
    ).fetchone()
    version = int(row[0]) if row else 0
    for number, step in enumerate(migrations[version:], start=version + 1):
        write_transaction(db, partial(_apply, step=step, component=component, number=number))
    return len(migrations)


def _apply(db: sqlite3.Connection, *, step: Migration, component: str, number: int) -> None:
    """One migration and the version it reaches, in the same transaction."""
    step(db)
    db.execute(
        "INSERT INTO tokenrelay_migrations(component, version) VALUES (?, ?)"
        " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
        (component, number),
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        session_id=row["session_id"],
        role=cast(StoredRole, row["role"]),
        content=row["content"],
        status=cast(MessageStatus, row["status"]),
        created_at=row["created_at"],
        metadata=json.loads(row["metadata"]),
    )


_SESSION_COLUMNS = (
    "s.id, s.created_at, s.updated_at, s.title, s.owner, s.active_stream_id,"
    " (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS n"
)


def _session(row: sqlite3.Row) -> SessionInfo:
    return SessionInfo(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        title=row["title"],
        owner=row["owner"],
        message_count=row["n"],
        active_stream_id=row["active_stream_id"],
    )


def _messages(db: sqlite3.Connection, session_id: str) -> list[StoredMessage]:
    rows = db.execute(
        "SELECT * FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
    ).fetchall()
    return [_message(r) for r in rows]


def _touch(
    db: sqlite3.Connection,
    session_id: str,
    owner: str | None,
    now: float,
    stream_id: str | None,
    *,
    create: bool,
    replica_id: str | None = None,
    takeover: str | None = None,
) -> bool:
    """A turn on an existing session: its time and active stream, and with a `stream_id` the
    session's claim (free, or held by `takeover`). False when there is no such session and
    `create` allows making it (the caller inserts it); SESSION_NOT_FOUND when it is another
    owner's, or unknown and not to be made; SESSION_BUSY when another turn holds it."""
    if stream_id is None:
        cur = db.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ? AND owner IS ?",
            (now, session_id, owner),
        )
    else:
        cur = db.execute(
            "UPDATE sessions SET updated_at = ?, active_stream_id = ?, turn_stream_id = ?,"
            " turn_replica_id = ? WHERE id = ? AND owner IS ?"
            " AND (turn_stream_id IS NULL OR turn_stream_id IS ?)",
            (now, stream_id, stream_id, replica_id, session_id, owner, takeover),
        )
    if cur.rowcount:
        return True
    row = db.execute(
        "SELECT owner, turn_stream_id FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    if row is None and create:
        return False
    if row is not None and row["owner"] == owner:
        raise session_busy(session_id, row["turn_stream_id"])
    raise session_not_found(session_id)


def _supersede(db: sqlite3.Connection, session_id: str, after_seq: int, replaced_by: str) -> None:
    """Mark the session's messages from `after_seq` on superseded by `replaced_by`; those
    superseded already keep the mark they have (the earlier version they belong to)."""
    db.execute(
        "UPDATE messages SET metadata = json_set(metadata, '$.superseded', json('true'),"
        " '$.superseded_by', ?) WHERE session_id = ? AND seq >= ?"
        " AND json_extract(metadata, '$.superseded') IS NULL",
        (replaced_by, session_id, after_seq),
    )


def _release(db: sqlite3.Connection, message_id: str) -> None:
    """The claim of the turn that wrote answer `message_id` ends, if it still holds it."""
    db.execute(
        "UPDATE sessions SET turn_stream_id = NULL, turn_replica_id = NULL"
        " WHERE id = (SELECT session_id FROM messages WHERE id = ?1)"
        " AND turn_stream_id = (SELECT stream_id FROM messages WHERE id = ?1)",
        (message_id,),
    )


def _run_group(
    db: sqlite3.Connection, bodies: list[Callable[[sqlite3.Connection], Any]]
) -> list[Any]:
    """Several writes in one transaction (group commit). If one raises, the group is undone
    and each write is run again in a transaction of its own, so only that one fails (its
    exception is returned in its place).

    Why not a savepoint per write: a write fails only on bad input (an unknown session), and
    every statement is a GIL hand-off between this thread and the event loop's; two of them
    per write were a large share of a new session's turn (docs/benchmarks.md)."""
    try:
        return write_transaction(db, lambda db: [body(db) for body in bodies])
    except Exception:  # rolled back: each write again, alone
        return [_run_alone(db, body) for body in bodies]


def _run_alone(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], Any]) -> Any:
    try:
        return write_transaction(db, body)
    except Exception as exc:
        return _Failed(exc)


# how long a deferred write waits for company. Under load each write had a thread hop and a
# commit of its own: new sessions came a few milliseconds apart, so few writes met, and a
# bare hop cost more CPU than the SQL of a turn's two writes (docs/benchmarks.md)
GROUP_WINDOW_S = 0.02


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class SQLiteSessionStore:
    """One connection on one worker thread. Reads are one hop each; writes that arrive while
    another group is being written are committed together in the next group, so under load
    a thousand turns cost a handful of thread hops and commits, not thousands."""

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # writes land in the order they are queued (one connection, one queue): a turn may queue
    # its answer behind its first write before that has landed (pipelines/chat.py `_finish`)
    writes_in_order = True

    def _write(
        self, body: Callable[[sqlite3.Connection], T], *, defer: bool = False
    ) -> asyncio.Future[T]:
        """Queue `body` for the next group; the future of its result. `defer`: nothing the
        caller answers waits on this write yet (a new session's first write, made while its
        answer starts), so the group may wait up to `GROUP_WINDOW_S` for other writes to share
        its thread hop and commit; any other write sends it at once, and so does
        `send_deferred` (the turn needs it: an answer that ends within the window does not
        wait for it)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((body, fut))
        if self._flusher is None or self._flusher.done():
            if not defer:
                self._send_group()
            elif self._timer is None:
                self._timer = loop.call_later(GROUP_WINDOW_S, self._send_group)
        return fut

    def send_deferred(self) -> None:
        self._send_group()

    def _send_group(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                bodies = [body for body, _ in group]
                results = await self._worker.run(partial(_run_group, bodies=bodies))
            except BaseException as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, fut), result in zip(group, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, _Failed):
                    fut.set_exception(result.exc)
                else:
                    fut.set_result(result)

    @classmethod
    async def open(cls, path: Path) -> SQLiteSessionStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        worker = await SqliteWorker.open(str(path), name="tokenrelay-sessions")

        def prepare(db: sqlite3.Connection) -> None:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            migrate(db, "sessions", MIGRATIONS)
            # answers a previous process left `streaming` are recovered by the start-up sweep
            # (sessions/recovery.py), with their text

        try:
            await worker.run(prepare)
        except BaseException:
            await worker.close()
            raise
        return cls(worker)

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
    ) -> asyncio.Future[TurnStart]:
        """Queued by the call itself, before any await: see `writes_in_order`."""
        now = time.time()
        sid, user_id, answer_id = turn_ids(session_id, planned)
        asked = dump_metadata(user_metadata)

        def body(db: sqlite3.Connection) -> TurnStart:
            history: list[StoredMessage] = []
            if session_id is None or not _touch(
                db,
                sid,
                owner,
                now,
                stream_id,
                create=create,
                replica_id=replica_id,
                takeover=takeover,
            ):
                db.execute(
                    "INSERT INTO sessions(id, owner, title, created_at, updated_at,"
                    " active_stream_id, turn_stream_id, turn_replica_id)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (
                        *(sid, owner, user_text[:80], now, now, stream_id, stream_id),
                        replica_id if stream_id is not None else None,
                    ),
                )
            else:
                history = _messages(db, sid)
            db.execute(  # one statement for both rows: one step, one GIL hand-off
                "INSERT INTO messages(id, session_id, role, content, status, created_at,"
                " metadata, stream_id, replica_id)"
                " VALUES (?,?,?,?,?,?,?,NULL,NULL), (?,?,?,?,?,?,'{}',?,?)",
                (
                    *(user_id, sid, "user", user_text, "complete", now, asked),
                    *(answer_id, sid, "assistant", "", "streaming", now, stream_id, replica_id),
                ),
            )
            return TurnStart(sid, user_id, answer_id, history)

        return self._write(body, defer=session_id is None and planned is not None)

    async def start_regenerate(
        self,
        session_id: str,
        *,
        owner: str | None = None,
        stream_id: str | None = None,
        replica_id: str | None = None,
        takeover: str | None = None,
    ) -> tuple[TurnStart, str]:
        now = time.time()
        answer_id = new_id()

        def body(db: sqlite3.Connection) -> tuple[TurnStart, str]:
            _touch(
                db,
                session_id,
                owner,
                now,
                stream_id,
                create=False,
                replica_id=replica_id,
                takeover=takeover,
            )
            row = db.execute(
                "SELECT seq, id, content FROM messages WHERE session_id = ? AND role = 'user'"
                " AND json_extract(metadata, '$.superseded') IS NULL ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None:
                raise nothing_to_regenerate(session_id)
            _supersede(db, session_id, row["seq"] + 1, answer_id)
            history = [m for m in _messages(db, session_id) if not is_superseded(m)]
            history = history[: [m.id for m in history].index(row["id"])]
            db.execute(
                "INSERT INTO messages"
                "(id, session_id, role, content, status, created_at, stream_id, replica_id)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (answer_id, session_id, "assistant", "", "streaming", now, stream_id, replica_id),
            )
            return TurnStart(session_id, row["id"], answer_id, history), row["content"]

        return await self._write(body)

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
        now = time.time()
        user_id, answer_id = new_id(), new_id()
        edit = dump_metadata({**(user_metadata or {}), "edit_of": message_id})

        def body(db: sqlite3.Connection) -> TurnStart:
            _touch(
                db,
                session_id,
                owner,
                now,
                stream_id,
                create=False,
                replica_id=replica_id,
                takeover=takeover,
            )
            row = db.execute(
                "SELECT seq FROM messages WHERE id = ? AND session_id = ? AND role = 'user'"
                " AND json_extract(metadata, '$.superseded') IS NULL",
                (message_id, session_id),
            ).fetchone()
            if row is None:
                raise not_editable(session_id, message_id)
            _supersede(db, session_id, row["seq"], user_id)
            history = [m for m in _messages(db, session_id) if not is_superseded(m)]
            db.execute(
                "INSERT INTO messages(id, session_id, role, content, status, created_at,"
                " metadata, stream_id, replica_id)"
                " VALUES (?,?,?,?,?,?,?,NULL,NULL), (?,?,?,?,?,?,'{}',?,?)",
                (
                    *(user_id, session_id, "user", user_text, "complete", now),
                    edit,
                    *(answer_id, session_id, "assistant", "", "streaming", now),
                    *(stream_id, replica_id),
                ),
            )
            return TurnStart(session_id, user_id, answer_id, history)

        return await self._write(body)

    async def running_turn(
        self, session_id: str, *, owner: str | None = None, stale_after_s: float
    ) -> RunningTurn | None:
        seen_after = time.time() - stale_after_s

        def body(db: sqlite3.Connection) -> RunningTurn | None:
            row = db.execute(
                "SELECT s.turn_stream_id, s.turn_replica_id, r.seen_at FROM sessions s"
                " LEFT JOIN replicas r ON r.id = s.turn_replica_id"
                " WHERE s.id = ? AND s.owner IS ? AND s.turn_stream_id IS NOT NULL",
                (session_id, owner),
            ).fetchone()
            if row is None:
                return None
            alive = row["seen_at"] is not None and row["seen_at"] >= seen_after
            return RunningTurn(row["turn_stream_id"], row["turn_replica_id"], alive)

        return await self._worker.run(body)

    async def claimable(self, session_id: str, *, owner: str | None = None) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT owner FROM sessions WHERE id = ?", (session_id,)).fetchone()
            return row is None or row["owner"] == owner

        return await self._worker.run(body)

    async def clear_active_stream(self, session_id: str, stream_id: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE sessions SET"
                " active_stream_id = nullif(active_stream_id, ?2),"
                " turn_replica_id = CASE WHEN turn_stream_id = ?2 THEN NULL"
                "  ELSE turn_replica_id END,"
                " turn_stream_id = nullif(turn_stream_id, ?2)"
                " WHERE id = ?1 AND ?2 IN (active_stream_id, turn_stream_id)",
                (session_id, stream_id),
            )
        )

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
    ) -> str:
        message_id = new_id()
        values = (
            message_id,
            session_id,
            role,
            content,
            status,
            time.time(),
            dump_metadata(metadata),
            stream_id,
            replica_id,
        )

        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO messages(id, session_id, role, content, status, created_at, metadata,"
                " stream_id, replica_id) VALUES (?,?,?,?,?,?,?,?,?)",
                values,
            )

        await self._write(body)
        return message_id

    def finish_turn(
        self,
        message_id: str,
        content: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None = None,
        *,
        ends_turn: bool = True,
    ) -> asyncio.Future[int]:
        """Queued at once, not at the first await: see `writes_in_order`."""
        dumped = dump_metadata(metadata)

        def body(db: sqlite3.Connection) -> int:
            db.execute(
                # an answer superseded meanwhile (a regenerate) stays superseded
                "UPDATE messages SET content = ?, status = ?, metadata = CASE WHEN"
                " json_extract(metadata, '$.superseded') THEN json_patch(?, json_object("
                "'superseded', json('true'), 'superseded_by',"
                " json_extract(metadata, '$.superseded_by'))) ELSE ? END WHERE id = ?",
                (content, status, dumped, dumped, message_id),
            )
            if ends_turn:
                _release(db, message_id)
            row = db.execute(
                "SELECT COUNT(*) FROM messages WHERE session_id ="
                " (SELECT session_id FROM messages WHERE id = ?)",
                (message_id,),
            ).fetchone()
            return int(row[0]) if row else 0

        return self._write(body)

    def checkpoint(self, message_id: str, content: str) -> asyncio.Future[None]:
        """Queued at once, so it lands before the answer's own `finish_turn`."""

        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'",
                (content, message_id),
            )

        return self._write(body)

    async def beat(self, replica_id: str) -> None:
        now = time.time()

        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO replicas(id, seen_at) VALUES (?, ?)"
                " ON CONFLICT(id) DO UPDATE SET seen_at = excluded.seen_at",
                (replica_id, now),
            )

        await self._write(body)

    async def forget_replica(self, replica_id: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM replicas WHERE id = ?", (replica_id,)))

    async def orphans(self, replica_id: str, *, stale_after_s: float | None) -> list[Orphan]:
        everyone_else_dead = int(stale_after_s is None)
        seen_before = time.time() - (stale_after_s or 0.0)

        def body(db: sqlite3.Connection) -> list[Orphan]:
            rows = db.execute(
                "SELECT m.id, m.stream_id, m.content FROM messages m"
                " LEFT JOIN replicas r ON r.id = m.replica_id"
                " WHERE m.status = 'streaming' AND (m.replica_id IS NULL"
                "  OR (m.replica_id != ? AND (? OR r.id IS NULL OR r.seen_at < ?)))"
                " ORDER BY m.seq",
                (replica_id, everyone_else_dead, seen_before),
            ).fetchall()
            return [Orphan(r["id"], r["stream_id"], r["content"]) for r in rows]

        return await self._worker.run(body)

    async def prune_replicas(self, replica_id: str, *, stale_after_s: float | None) -> None:
        everyone_else_dead = int(stale_after_s is None)
        seen_before = time.time() - (stale_after_s or 0.0)
        await self._write(
            lambda db: db.execute(
                "DELETE FROM replicas WHERE id != ? AND (? OR seen_at < ?)",
                (replica_id, everyone_else_dead, seen_before),
            )
        )

    async def interrupt(self, message_id: str, content: str, reason: str) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE messages SET content = ?, status = 'interrupted',"
                " metadata = json_set(metadata, '$.interrupted', ?)"
                " WHERE id = ? AND status = 'streaming'",
                (content, reason, message_id),
            )
            if cur.rowcount == 0:
                return False
            _release(db, message_id)
            return True

        return await self._write(body)

    async def get_session(self, session_id: str, *, owner: str | None = None) -> SessionInfo | None:
        def body(db: sqlite3.Connection) -> SessionInfo | None:
            row = db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ? AND s.owner IS ?",
                (session_id, owner),
            ).fetchone()
            return _session(row) if row else None

        return await self._worker.run(body)

    async def list_sessions(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SessionInfo]:
        def body(db: sqlite3.Connection) -> list[SessionInfo]:
            rows = db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.owner IS ?"
                " ORDER BY s.updated_at DESC LIMIT ? OFFSET ?",
                (owner, limit, offset),
            ).fetchall()
            return [_session(r) for r in rows]

        return await self._worker.run(body)

    async def messages(self, session_id: str) -> list[StoredMessage]:
        return await self._worker.run(lambda db: _messages(db, session_id))

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "DELETE FROM sessions WHERE id = ? AND owner IS ?", (session_id, owner)
            )
            return cur.rowcount > 0

        return await self._write(body)

    async def aclose(self) -> None:
        self.send_deferred()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._worker.close()
