"""Session storage protocol and records.

A turn is written in two steps: `start_turn` stores the user's message and a placeholder for
the answer (status `streaming`) in one transaction; `finish_turn` stores the answer with its
final status: `complete`, `interrupted` (cancelled, timed out, disconnected) or `failed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from tokenrelay.errors import SessionNotFound


def new_id() -> str:
    """A random 128-bit id as 32 hex digits (what uuid4().hex looks like, at a fifth of the
    cost: no UUID object; five are made per stream)."""
    return os.urandom(16).hex()


def dump_metadata(metadata: dict[str, Any] | None) -> str:
    """Compact JSON, non-ASCII as is (orjson: a fifth of `json.dumps`, twice per turn)."""
    return orjson.dumps(metadata or {}, option=orjson.OPT_NON_STR_KEYS).decode()


def session_not_found(session_id: str) -> SessionNotFound:
    """The one SESSION_NOT_FOUND, whichever store or route finds the session missing."""
    return SessionNotFound(
        f"no session {session_id!r}",
        suggestion="leave session_id out to start a new conversation,"
        " or list yours at GET /api/sessions",
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


class SessionStore(Protocol):
    async def start_turn(
        self,
        session_id: str | None,
        user_text: str,
        *,
        owner: str | None = None,
        planned: TurnStart | None = None,
    ) -> TurnStart:
        """Create the session when `session_id` is None (with the ids of `planned` when given);
        raise SessionNotFound if unknown."""
        ...

    async def add_message(
        self,
        session_id: str,
        role: StoredRole,
        content: str,
        *,
        status: MessageStatus = "complete",
        metadata: dict[str, Any] | None = None,
    ) -> str: ...

    async def finish_turn(
        self,
        message_id: str,
        content: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Store the answer; returns how many messages the session now holds."""
        ...

    async def get_session(
        self, session_id: str, *, owner: str | None = None
    ) -> SessionInfo | None: ...

    async def list_sessions(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SessionInfo]: ...

    async def messages(self, session_id: str) -> list[StoredMessage]: ...

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> bool: ...

    async def aclose(self) -> None: ...
