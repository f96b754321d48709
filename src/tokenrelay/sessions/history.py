"""Pure functions that turn stored history into the messages sent to the model."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tokenrelay.providers.base import ChatMessage, ToolCall
from tokenrelay.sessions.base import StoredMessage, is_superseded


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate: one token per 3 bytes of UTF-8.

    English runs about 4 bytes a token; Korean (3 bytes a syllable) about one token a syllable,
    so this errs on the side of sending less history rather than overflowing the context.
    """
    return math.ceil(len(text.encode("utf-8")) / 3) + 4


def to_chat_message(message: StoredMessage) -> ChatMessage | None:
    """Stored message → model message; None for what the model should not see again."""
    if message.status == "streaming" or is_superseded(message):
        return None
    if message.role == "assistant":
        calls = tuple(
            ToolCall(c["id"], c["name"], c.get("arguments", {}))
            for c in message.metadata.get("tool_calls", [])
        )
        if not message.content and not calls:
            return None
        return ChatMessage("assistant", message.content, tool_calls=calls)
    if message.role == "tool":
        return ChatMessage(
            "tool",
            message.content,
            tool_call_id=message.metadata.get("call_id"),
            name=message.metadata.get("tool"),
        )
    return ChatMessage(message.role, message.content)


def fit_history(history: Sequence[StoredMessage], budget_tokens: int) -> list[ChatMessage]:
    """The most recent history that fits the budget, oldest first.

    Whole messages only; the cut never starts on a tool result or an assistant reply, so the
    model always sees a turn from its user message on.
    """
    picked: list[ChatMessage] = []
    used = 0
    for stored in reversed(history):
        message = to_chat_message(stored)
        if message is None:
            continue
        cost = estimate_tokens(message.content)
        if used + cost > budget_tokens:
            break
        used += cost
        picked.append(message)
    picked.reverse()
    while picked and picked[0].role != "user":
        picked.pop(0)
    return picked


def build_messages(
    system_prompt: str, history: Sequence[StoredMessage], user_text: str, budget_tokens: int
) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    if system_prompt:
        messages.append(ChatMessage("system", system_prompt))
    remaining = budget_tokens - estimate_tokens(user_text)
    messages.extend(fit_history(history, max(0, remaining)))
    messages.append(ChatMessage("user", user_text))
    return messages
