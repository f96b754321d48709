"""Sessions in PostgreSQL (asyncpg), shared by several replicas.

Same schema and behaviour as the SQLite store; migrations are ordered functions applied under
an advisory lock, so replicas starting together migrate once. Connection failures become
BACKEND_UNAVAILABLE errors; the pool reconnects by itself when the server is back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from tokenrelay.errors import BackendUnavailable, misconfigured
from tokenrelay.i18n import tr
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

try:
    import asyncpg
except ImportError:  # pragma: no cover - the hint is raised when a database URL is set
    asyncpg = None

Migration = Callable[[Any], Awaitable[None]]
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x746F_6B72  # pg_advisory_xact_lock key for session migrations


async def _m001_sessions_and_messages(conn: Any) -> None:
    await conn.execute(
        """
        CREATE TABLE tokenrelay_sessions (
            id TEXT PRIMARY KEY,
            owner TEXT,
            title TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX tokenrelay_sessions_owner ON tokenrelay_sessions(owner, updated_at DESC);
        CREATE TABLE tokenrelay_messages (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            session_id TEXT NOT NULL REFERENCES tokenrelay_sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{}'
        );
        CREATE INDEX tokenrelay_messages_session ON tokenrelay_messages(session_id, seq);
        """
    )


async def _m002_answer_owners_and_replicas(conn: Any) -> None:
    """Crash recovery: as sessions/sqlite.py's migration of the same name. Heartbeats are in
    the database's clock (replicas on several machines need not agree on the time)."""
    await conn.execute(
        """
        ALTER TABLE tokenrelay_messages ADD COLUMN stream_id TEXT;
        ALTER TABLE tokenrelay_messages ADD COLUMN replica_id TEXT;
        CREATE INDEX tokenrelay_messages_streaming ON tokenrelay_messages(replica_id)
            WHERE status = 'streaming';
        CREATE TABLE tokenrelay_replicas (
            id TEXT PRIMARY KEY,
            seen_at DOUBLE PRECISION NOT NULL
        );
        """
    )


async def _m003_active_streams(conn: Any) -> None:
    """Each session's latest stream: as sessions/sqlite.py's migration of the same name."""
    await conn.execute("ALTER TABLE tokenrelay_sessions ADD COLUMN active_stream_id TEXT")


async def _m004_turn_claims(conn: Any) -> None:
    """One turn at a time per session: as sessions/sqlite.py's migration of the same name."""
    await conn.execute(
        "ALTER TABLE tokenrelay_sessions ADD COLUMN turn_stream_id TEXT,"
        " ADD COLUMN turn_replica_id TEXT"
    )


MIGRATIONS: list[Migration] = [
    _m001_sessions_and_messages,
    _m002_answer_owners_and_replicas,
    _m003_active_streams,
    _m004_turn_claims,
]

_NOW = "extract(epoch FROM clock_timestamp())"
# the claim of the turn whose answer `updated` (a CTE: session_id, stream_id) wrote ends
_RELEASE = (
    "UPDATE tokenrelay_sessions s SET turn_stream_id = NULL, turn_replica_id = NULL"
    " FROM updated u WHERE s.id = u.session_id AND s.turn_stream_id = u.stream_id"
)


async def migrate(conn: Any, component: str, migrations: list[Migration]) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS tokenrelay_migrations"
            " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        version = await conn.fetchval(
            "SELECT version FROM tokenrelay_migrations WHERE component = $1", component
        )
        version = int(version or 0)
        for number, step in enumerate(migrations[version:], start=version + 1):
            await step(conn)
            await conn.execute(
                "INSERT INTO tokenrelay_migrations(component, version) VALUES ($1, $2)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                component,
                number,
            )
    return len(migrations)


def backend_down(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        tr("the server cannot reach its session database right now"),
        suggestion=tr("try again in a moment"),
        details={
            "operator": "check TOKENRELAY_DATABASE_URL and that PostgreSQL is up"
            f" ({type(exc).__name__})"
        },
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    assert asyncpg is not None
    return (
        OSError,
        ConnectionError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.AdminShutdownError,
        TimeoutError,
    )


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        session_id=row["session_id"],
        role=cast(StoredRole, row["role"]),
        content=row["content"],
        status=cast(MessageStatus, row["status"]),
        created_at=row["created_at"],
        metadata=json.loads(row["metadata"]) if isinstance(row["metadata"], str) else {},
    )


def _session(row: Any) -> SessionInfo:
    return SessionInfo(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        title=row["title"],
        owner=row["owner"],
        message_count=row["n"],
        active_stream_id=row["active_stream_id"],
    )


_SESSION_COLUMNS = (
    "s.id, s.created_at, s.updated_at, s.title, s.owner, s.active_stream_id,"
    " (SELECT COUNT(*) FROM tokenrelay_messages m WHERE m.session_id = s.id) AS n"
)


def _claimable(takeover: str) -> str:
    """A turn with a stream ($4) claims the session only when no turn holds it, or the
    parameter `takeover` names the holder."""
    return (
        "($4::text IS NULL OR tokenrelay_sessions.turn_stream_id IS NULL"
        f" OR tokenrelay_sessions.turn_stream_id = {takeover}::text)"
    )


async def _touch(
    conn: Any,
    session_id: str,
    owner: str | None,
    now: float,
    stream_id: str | None,
    *,
    create: bool,
    title: str = "",
    replica_id: str | None = None,
    takeover: str | None = None,
) -> None:
    """A turn on a session: its time and active stream, and with a `stream_id` the session's
    claim (free, or held by `takeover`; sessions/base.py), made first when `create` allows and
    no session has the id. Concurrent turns on one session queue on its row lock, and each
    sees the claim the one before it left. SESSION_NOT_FOUND when another owner has it, or it
    is unknown and not to be made; SESSION_BUSY when another turn holds it."""
    args = (session_id, owner, now, stream_id, replica_id)
    if create:
        found = await conn.fetchval(
            "INSERT INTO tokenrelay_sessions(id, owner, title, created_at, updated_at,"
            " active_stream_id, turn_stream_id, turn_replica_id)"
            " VALUES ($1, $2, $6, $3, $3, $4, $4, CASE WHEN $4::text IS NULL THEN NULL"
            "  ELSE $5::text END)"
            " ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at,"
            " active_stream_id = coalesce(excluded.active_stream_id,"
            "  tokenrelay_sessions.active_stream_id),"
            " turn_stream_id = coalesce(excluded.turn_stream_id,"
            "  tokenrelay_sessions.turn_stream_id),"
            " turn_replica_id = CASE WHEN excluded.turn_stream_id IS NULL"
            "  THEN tokenrelay_sessions.turn_replica_id ELSE excluded.turn_replica_id END"
            " WHERE tokenrelay_sessions.owner IS NOT DISTINCT FROM excluded.owner"
            f" AND {_claimable('$7')} RETURNING id",
            *args,
            title[:80],
            takeover,
        )
    else:
        found = await conn.fetchval(
            "UPDATE tokenrelay_sessions SET updated_at = $3,"
            " active_stream_id = coalesce($4, active_stream_id),"
            " turn_stream_id = coalesce($4, turn_stream_id),"
            " turn_replica_id = CASE WHEN $4::text IS NULL THEN turn_replica_id"
            "  ELSE $5::text END"
            f" WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND {_claimable('$6')}"
            " RETURNING id",
            *args,
            takeover,
        )
    if found is not None:
        return
    row = await conn.fetchrow(
        "SELECT owner, turn_stream_id FROM tokenrelay_sessions WHERE id = $1", session_id
    )
    if row is not None and row["owner"] == owner:
        raise session_busy(session_id, row["turn_stream_id"])
    raise session_not_found(session_id)


async def _supersede(conn: Any, session_id: str, from_seq: int, replaced_by: str) -> None:
    """As sessions/sqlite.py's `_supersede`."""
    await conn.execute(
        "UPDATE tokenrelay_messages SET metadata = metadata"
        " || jsonb_build_object('superseded', true, 'superseded_by', $3::text)"
        " WHERE session_id = $1 AND seq >= $2 AND NOT metadata ? 'superseded'",
        session_id,
        from_seq,
        replaced_by,
    )


class PostgresSessionStore:
    writes_in_order = False  # a pool: a later write may land before an earlier one

    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self.schema = schema
        self._errors = _connection_errors()

    @classmethod
    async def open(
        cls, dsn: str, *, schema: str = "public", max_size: int = 10
    ) -> PostgresSessionStore:
        if asyncpg is None:
            raise misconfigured(
                BackendUnavailable,
                tr("the conversation store of this server is not available"),
                "TOKENRELAY_DATABASE_URL is set but asyncpg is not installed:"
                " pip install 'tokenrelay[postgres]', or unset TOKENRELAY_DATABASE_URL",
            )
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_size,
                server_settings={"search_path": f"{schema}, public"},
            )
            async with pool.acquire() as conn:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await migrate(conn, "sessions", MIGRATIONS)
        except _connection_errors() as exc:
            raise backend_down(exc) from exc
        return cls(pool, schema)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire(timeout=10) as conn:
                yield conn
        except self._errors as exc:
            raise backend_down(exc) from exc

    async def start_turn(
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
    ) -> TurnStart:
        now = time.time()
        asked = dump_metadata(user_metadata)
        placed = (stream_id, replica_id)
        history: list[StoredMessage] = []
        sid, user_id, answer_id = turn_ids(session_id, planned)
        async with self._conn() as conn, conn.transaction():
            if session_id is None:
                await conn.execute(
                    "INSERT INTO tokenrelay_sessions(id, owner, title, created_at, updated_at,"
                    " active_stream_id, turn_stream_id, turn_replica_id)"
                    " VALUES ($1, $2, $3, $4, $4, $5, $5, $6)",
                    sid,
                    owner,
                    user_text[:80],
                    now,
                    stream_id,
                    replica_id if stream_id is not None else None,
                )
            else:
                await _touch(
                    conn,
                    sid,
                    owner,
                    now,
                    stream_id,
                    create=create,
                    title=user_text,
                    replica_id=replica_id,
                    takeover=takeover,
                )
                rows = await conn.fetch(
                    "SELECT * FROM tokenrelay_messages WHERE session_id = $1 ORDER BY seq",
                    sid,
                )
                history = [_message(r) for r in rows]
            await conn.executemany(
                "INSERT INTO tokenrelay_messages(id, session_id, role, content, status,"
                " created_at, metadata, stream_id, replica_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
                [
                    (user_id, sid, "user", user_text, "complete", now, asked, None, None),
                    (answer_id, sid, "assistant", "", "streaming", now, "{}", *placed),
                ],
            )
        return TurnStart(sid, user_id, answer_id, history)

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
        async with self._conn() as conn, conn.transaction():
            await _touch(
                conn,
                session_id,
                owner,
                now,
                stream_id,
                create=False,
                replica_id=replica_id,
                takeover=takeover,
            )
            row = await conn.fetchrow(
                "SELECT seq, id, content FROM tokenrelay_messages WHERE session_id = $1"
                " AND role = 'user' AND NOT metadata ? 'superseded' ORDER BY seq DESC LIMIT 1",
                session_id,
            )
            if row is None:
                raise nothing_to_regenerate(session_id)
            await _supersede(conn, session_id, row["seq"] + 1, answer_id)
            rows = await conn.fetch(
                "SELECT * FROM tokenrelay_messages WHERE session_id = $1 AND seq < $2 ORDER BY seq",
                session_id,
                row["seq"],
            )
            await conn.execute(
                "INSERT INTO tokenrelay_messages"
                "(id, session_id, role, content, status, created_at, stream_id, replica_id)"
                " VALUES ($1, $2, 'assistant', '', 'streaming', $3, $4, $5)",
                answer_id,
                session_id,
                now,
                stream_id,
                replica_id,
            )
        history = [m for m in map(_message, rows) if not is_superseded(m)]
        return TurnStart(session_id, row["id"], answer_id, history), row["content"]

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
        placed = (stream_id, replica_id)
        async with self._conn() as conn, conn.transaction():
            await _touch(
                conn,
                session_id,
                owner,
                now,
                stream_id,
                create=False,
                replica_id=replica_id,
                takeover=takeover,
            )
            seq = await conn.fetchval(
                "SELECT seq FROM tokenrelay_messages WHERE id = $1 AND session_id = $2"
                " AND role = 'user' AND NOT metadata ? 'superseded'",
                message_id,
                session_id,
            )
            if seq is None:
                raise not_editable(session_id, message_id)
            await _supersede(conn, session_id, seq, user_id)
            rows = await conn.fetch(
                "SELECT id, session_id, role, content, status, created_at, metadata::text"
                " AS metadata FROM tokenrelay_messages WHERE session_id = $1 AND seq < $2"
                " AND NOT metadata ? 'superseded' ORDER BY seq",
                session_id,
                seq,
            )
            await conn.executemany(
                "INSERT INTO tokenrelay_messages(id, session_id, role, content, status,"
                " created_at, metadata, stream_id, replica_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
                [
                    (user_id, session_id, "user", user_text, "complete", now, edit, None, None),
                    (answer_id, session_id, "assistant", "", "streaming", now, "{}", *placed),
                ],
            )
        return TurnStart(session_id, user_id, answer_id, [_message(r) for r in rows])

    async def running_turn(
        self, session_id: str, *, owner: str | None = None, stale_after_s: float
    ) -> RunningTurn | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT s.turn_stream_id, s.turn_replica_id,"
                f" coalesce(r.seen_at >= {_NOW} - $3, false) AS alive"
                " FROM tokenrelay_sessions s"
                " LEFT JOIN tokenrelay_replicas r ON r.id = s.turn_replica_id"
                " WHERE s.id = $1 AND s.owner IS NOT DISTINCT FROM $2"
                " AND s.turn_stream_id IS NOT NULL",
                session_id,
                owner,
                stale_after_s,
            )
        if row is None:
            return None
        return RunningTurn(row["turn_stream_id"], row["turn_replica_id"], bool(row["alive"]))

    async def claimable(self, session_id: str, *, owner: str | None = None) -> bool:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT owner FROM tokenrelay_sessions WHERE id = $1", session_id
            )
        return row is None or row["owner"] == owner

    async def clear_active_stream(self, session_id: str, stream_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE tokenrelay_sessions SET"
                " active_stream_id = nullif(active_stream_id, $2),"
                " turn_replica_id = CASE WHEN turn_stream_id = $2 THEN NULL"
                "  ELSE turn_replica_id END,"
                " turn_stream_id = nullif(turn_stream_id, $2)"
                " WHERE id = $1 AND $2 IN (active_stream_id, turn_stream_id)",
                session_id,
                stream_id,
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
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO tokenrelay_messages"
                "(id, session_id, role, content, status, created_at, metadata, stream_id,"
                " replica_id) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
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
        return message_id

    async def finish_turn(
        self,
        message_id: str,
        content: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None = None,
        *,
        ends_turn: bool = True,
    ) -> int:
        async with self._conn() as conn:
            count = await conn.fetchval(
                "WITH updated AS ("
                " UPDATE tokenrelay_messages SET content = $1, status = $2, metadata = $3::jsonb"
                # an answer superseded meanwhile (a regenerate) stays superseded
                " || CASE WHEN metadata ? 'superseded' THEN jsonb_strip_nulls(jsonb_build_object("
                "'superseded', true, 'superseded_by', metadata->'superseded_by'))"
                " ELSE '{}'::jsonb END"
                " WHERE id = $4 RETURNING session_id, stream_id),"
                f" released AS ({_RELEASE} AND $5)"
                " SELECT COUNT(*) FROM tokenrelay_messages"
                " WHERE session_id = (SELECT session_id FROM updated)",
                content,
                status,
                dump_metadata(metadata),
                message_id,
                ends_turn,
            )
        return int(count or 0)

    async def checkpoint(self, message_id: str, content: str) -> None:
        """Conditional on `streaming`: landing after the answer's `finish_turn` (a pool keeps
        no order) changes nothing."""
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE tokenrelay_messages SET content = $1"
                " WHERE id = $2 AND status = 'streaming'",
                content,
                message_id,
            )

    async def beat(self, replica_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                f"INSERT INTO tokenrelay_replicas(id, seen_at) VALUES ($1, {_NOW})"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                replica_id,
            )

    async def forget_replica(self, replica_id: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM tokenrelay_replicas WHERE id = $1", replica_id)

    async def orphans(self, replica_id: str, *, stale_after_s: float | None) -> list[Orphan]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT m.id, m.stream_id, m.content FROM tokenrelay_messages m"
                " LEFT JOIN tokenrelay_replicas r ON r.id = m.replica_id"
                " WHERE m.status = 'streaming' AND (m.replica_id IS NULL"
                "  OR (m.replica_id <> $1 AND ($2 OR r.id IS NULL"
                f"   OR r.seen_at < {_NOW} - $3)))"
                " ORDER BY m.seq",
                replica_id,
                stale_after_s is None,
                stale_after_s or 0.0,
            )
        return [Orphan(r["id"], r["stream_id"], r["content"]) for r in rows]

    async def prune_replicas(self, replica_id: str, *, stale_after_s: float | None) -> None:
        async with self._conn() as conn:
            await conn.execute(
                f"DELETE FROM tokenrelay_replicas WHERE id <> $1 AND ($2 OR seen_at < {_NOW} - $3)",
                replica_id,
                stale_after_s is None,
                stale_after_s or 0.0,
            )

    async def interrupt(self, message_id: str, content: str, reason: str) -> bool:
        async with self._conn() as conn:
            found = await conn.fetchval(
                "WITH updated AS ("
                " UPDATE tokenrelay_messages SET content = $1, status = 'interrupted',"
                " metadata = metadata || jsonb_build_object('interrupted', $2::text)"
                " WHERE id = $3 AND status = 'streaming' RETURNING session_id, stream_id),"
                f" released AS ({_RELEASE})"
                " SELECT COUNT(*) FROM updated",
                content,
                reason,
                message_id,
            )
        return bool(found)

    async def get_session(self, session_id: str, *, owner: str | None = None) -> SessionInfo | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_SESSION_COLUMNS} FROM tokenrelay_sessions s"
                " WHERE s.id = $1 AND s.owner IS NOT DISTINCT FROM $2",
                session_id,
                owner,
            )
        return _session(row) if row else None

    async def list_sessions(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SessionInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_SESSION_COLUMNS} FROM tokenrelay_sessions s"
                " WHERE s.owner IS NOT DISTINCT FROM $1"
                " ORDER BY s.updated_at DESC LIMIT $2 OFFSET $3",
                owner,
                limit,
                offset,
            )
        return [_session(r) for r in rows]

    async def messages(self, session_id: str) -> list[StoredMessage]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, session_id, role, content, status, created_at, metadata::text"
                " AS metadata FROM tokenrelay_messages WHERE session_id = $1 ORDER BY seq",
                session_id,
            )
        return [_message(r) for r in rows]

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> bool:
        async with self._conn() as conn:
            result = await conn.execute(
                "DELETE FROM tokenrelay_sessions WHERE id = $1 AND owner IS NOT DISTINCT FROM $2",
                session_id,
                owner,
            )
        return bool(result.endswith(" 1"))

    def send_deferred(self) -> None:
        """Nothing waits here: every write goes to the pool at once."""

    async def aclose(self) -> None:
        await self._pool.close()
