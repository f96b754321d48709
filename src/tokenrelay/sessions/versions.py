"""A session's messages with their versions, for `GET /api/sessions/{id}` (pure).

A regenerate or an edit keeps what it replaces: each replaced message is marked `superseded`,
with `superseded_by`, the id of the message that took its place (the new answer, or the new
user message; sessions/base.py). Read back, every message says whether it is `superseded`,
and every message that replaced others lists their `versions`: the id of the first message of
each earlier version, oldest first, through every generation (an answer regenerated twice
lists both earlier answers). A version is all the messages marked with the same
`superseded_by`: an answer with its tool rounds, or the whole branch after an edited message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tokenrelay.sessions.base import StoredMessage, is_superseded


def earlier_versions(messages: Sequence[StoredMessage]) -> dict[str, list[str]]:
    """For each message that replaced others, the first message ids of the versions before
    it, oldest first."""
    heads: dict[str, str] = {}  # replacing message id -> first message of what it replaced
    for message in messages:
        replaced_by = message.metadata.get("superseded_by")
        if isinstance(replaced_by, str) and replaced_by not in heads:
            heads[replaced_by] = message.id
    found: dict[str, list[str]] = {}

    def chain(message_id: str, seen: frozenset[str]) -> list[str]:
        head = heads.get(message_id)
        if head is None or head in seen:  # a cycle cannot be written; never loop on one
            return []
        return [*chain(head, seen | {head}), head]

    for message_id in heads:
        found[message_id] = chain(message_id, frozenset({message_id}))
    return found


def with_versions(messages: Sequence[StoredMessage]) -> list[dict[str, Any]]:
    """Each message as JSON, with `superseded` and `versions` (see the module doc)."""
    versions = earlier_versions(messages)
    return [
        {**asdict(m), "superseded": is_superseded(m), "versions": versions.get(m.id, [])}
        for m in messages
    ]
