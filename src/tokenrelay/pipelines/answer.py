"""Accumulating one answer from provider events: pure state, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenrelay.providers.base import (
    Finish,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
    Usage,
)


@dataclass(slots=True)
class Answer:
    """What the model said so far in one turn, across tool rounds."""

    parts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    chunks: int = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, event: ProviderEvent) -> str | None:
        """Take one provider event; returns the text it added (a token), else None."""
        if isinstance(event, TextDelta):  # once per token: tested before the match
            text = event.text
            if text:
                self.parts.append(text)
                self.chunks += 1
                return text
            return None
        match event:
            case ToolCallPart(call=call):
                self.tool_calls.append(call)
            case Usage(prompt_tokens=p, completion_tokens=c):
                # one usage per provider round; rounds add up
                self.prompt_tokens += p
                self.completion_tokens += c
            case Finish(reason=reason):
                self.finish_reason = reason
        return None
