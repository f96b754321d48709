"""Sessions in a SQLite file (the embedded default), through aiosqlite.

Schema changes are ordered migration functions; the applied count is kept per component in
`tokenrelay_migrations`, so other components (retrieval) can share the file.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiosqlite

from tokenrelay.errors import SessionNotFound
from tokenrelay.sessions.base import (
    MessageStatus,
    SessionInfo,
    StoredMessage,
    StoredRole,
    TurnStart,
)

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _m001_sessions_and_messages(db: aiosqlite.Connection) -> None:
    await db.executescript(
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
        """
    )


MIGRATIONS: list[Migration] = [_m001_sessions_and_messages]


async def migrate(db: aiosqlite.Connection, component: str, migrations: list[Migration]) -> int:
    """Apply the migrations of `component` not applied yet; returns the version reached."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS tokenrelay_migrations"
        " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    async with db.execute(
        "SELECT version FROM tokenrelay_migrations WHERE component = ?", (component,)
    ) as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    for number, step in enumerate(migrations[version:], start=version + 1):
        await step(db)
        await db.execute(
            "INSERT INTO tokenrelay_migrations(component, version) VALUES (?, ?)"
            " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            (component, number),
        )
        await db.commit()
    return len(migrations)


def new_id() -> str:
    return uuid.uuid4().hex


def _message(row: aiosqlite.Row) -> StoredMessage:
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
    "s.id, s.created_at, s.updated_at, s.title, s.owner,"
    " (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS n"
)


def _session(row: aiosqlite.Row) -> SessionInfo:
    return SessionInfo(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        title=row["title"],
        owner=row["owner"],
        message_count=row["n"],
    )


class SQLiteSessionStore:
    """One connection; a lock keeps each multi-statement write its own transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SQLiteSessionStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        await migrate(db, "sessions", MIGRATIONS)
        # a previous process that died mid-answer left placeholders: they were interrupted
        await db.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
        await db.commit()
        return cls(db)

    async def start_turn(
        self, session_id: str | None, user_text: str, *, owner: str | None = None
    ) -> TurnStart:
        async with self._write:
            return await self._start_turn(session_id, user_text, owner)

    async def _start_turn(
        self, session_id: str | None, user_text: str, owner: str | None
    ) -> TurnStart:
        now = time.time()
        db = self._db
        history: list[StoredMessage] = []
        if session_id is None:
            session_id = new_id()
            await db.execute(
                "INSERT INTO sessions(id, owner, title, created_at, updated_at) VALUES (?,?,?,?,?)",
                (session_id, owner, user_text[:80], now, now),
            )
        else:
            cur = await db.execute(
                "UPDATE sessions SET updated_at = ? WHERE id = ? AND owner IS ?",
                (now, session_id, owner),
            )
            if cur.rowcount == 0:
                await db.rollback()
                raise _session_not_found(session_id)
            history = await self.messages(session_id)
        user_id, answer_id = new_id(), new_id()
        await db.executemany(
            "INSERT INTO messages(id, session_id, role, content, status, created_at)"
            " VALUES (?,?,?,?,?,?)",
            [
                (user_id, session_id, "user", user_text, "complete", now),
                (answer_id, session_id, "assistant", "", "streaming", now),
            ],
        )
        await db.commit()
        return TurnStart(session_id, user_id, answer_id, history)

    async def add_message(
        self,
        session_id: str,
        role: StoredRole,
        content: str,
        *,
        status: MessageStatus = "complete",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        message_id = new_id()
        async with self._write:
            await self._db.execute(
                "INSERT INTO messages(id, session_id, role, content, status, created_at, metadata)"
                " VALUES (?,?,?,?,?,?,?)",
                (message_id, session_id, role, content, status, time.time(), _dump(metadata)),
            )
            await self._db.commit()
        return message_id

    async def finish_turn(
        self,
        message_id: str,
        content: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        db = self._db
        async with self._write:
            await db.execute(
                "UPDATE messages SET content = ?, status = ?, metadata = ? WHERE id = ?",
                (content, status, _dump(metadata), message_id),
            )
            async with db.execute(
                "SELECT COUNT(*) FROM messages WHERE session_id ="
                " (SELECT session_id FROM messages WHERE id = ?)",
                (message_id,),
            ) as cur:
                row = await cur.fetchone()
            await db.commit()
        return int(row[0]) if row else 0

    async def get_session(self, session_id: str, *, owner: str | None = None) -> SessionInfo | None:
        async with self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ? AND s.owner IS ?",
            (session_id, owner),
        ) as cur:
            row = await cur.fetchone()
        return _session(row) if row else None

    async def list_sessions(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SessionInfo]:
        async with self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.owner IS ?"
            " ORDER BY s.updated_at DESC LIMIT ? OFFSET ?",
            (owner, limit, offset),
        ) as cur:
            rows = await cur.fetchall()
        return [_session(r) for r in rows]

    async def messages(self, session_id: str) -> list[StoredMessage]:
        async with self._db.execute(
            "SELECT * FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
        ) as cur:
            rows = await cur.fetchall()
        return [_message(r) for r in rows]

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> bool:
        async with self._write:
            cur = await self._db.execute(
                "DELETE FROM sessions WHERE id = ? AND owner IS ?", (session_id, owner)
            )
            await self._db.commit()
        return cur.rowcount > 0

    async def aclose(self) -> None:
        await self._db.close()


def _dump(metadata: dict[str, Any] | None) -> str:
    return json.dumps(metadata or {}, ensure_ascii=False, separators=(",", ":"))


def _session_not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(
        f"no session {session_id!r}",
        suggestion="leave session_id out to start a new conversation,"
        " or list yours at GET /api/sessions",
    )
