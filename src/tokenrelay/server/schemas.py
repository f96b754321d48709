"""Request bodies of the native API. Unknown fields are errors, so typos never pass silently;
every field is read in both spellings, `session_id` or `sessionId` (tokenrelay/spelling.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from tokenrelay.spelling import RequestModel, ScriptedRequestOptions

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"


class RagOptions(RequestModel):
    """Ground the answer in the user's documents (see docs/retrieval.md)."""

    top_k: int | None = Field(default=None, ge=1, le=50)
    min_score: float | None = Field(default=None, ge=0.0)
    mode: Literal["lexical", "semantic", "hybrid"] | None = Field(
        default=None, description="lexical (words), semantic (embeddings) or hybrid (both)"
    )


class ChatOptions(RequestModel):
    provider: str | None = Field(default=None, max_length=64, description="provider name")
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    scripted: ScriptedRequestOptions | None = None
    rag: RagOptions | bool | None = Field(
        default=None, description="retrieval: an object, true (server defaults) or false (off)"
    )
    enable_tools: bool = Field(default=True, description="offer the server's tools to the model")
    tools: list[str] | None = Field(
        default=None, max_length=64, description="allow-list of tool names (default: all)"
    )
    system: str | None = Field(
        default=None,
        min_length=1,
        max_length=20_000,
        description="this turn's system prompt instead of the server's (`system_prompt`);"
        " with retrieval, the grounding instructions are added to it",
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="nucleus sampling")
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="up to 4 strings; the answer ends before the first of them",
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="repeatable sampling, where supported"
    )
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)

    def sampling(self) -> dict[str, object]:
        """The sampling fields asked for (a provider refuses those it lacks: 422)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }

    locale: str | None = Field(
        default=None,
        max_length=35,
        description="language of messages (`ko`, `en`, `ko-KR`): before Accept-Language",
    )

    def provider_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.scripted is not None:
            extra["scripted"] = self.scripted.model_dump(exclude_unset=True)
        return extra


class ChatRequest(RequestModel):
    message: str = Field(description="the user's message, 1 to max_message_chars characters")
    session_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="continue this session; an id no session has yet (1-128 characters of"
        " A-Z a-z 0-9 _ -, chosen by the client) starts one, owned by the caller's key",
    )
    options: ChatOptions = Field(default_factory=ChatOptions)
    event_names: bool | None = Field(
        default=None, description="false leaves out `event:` lines (EventSource.onmessage)"
    )


class RegenerateRequest(RequestModel):
    """`POST /api/sessions/{id}/regenerate`: a new answer to the last user message."""

    options: ChatOptions = Field(default_factory=ChatOptions)
    event_names: bool | None = Field(
        default=None, description="false leaves out `event:` lines (EventSource.onmessage)"
    )


class EditRequest(RegenerateRequest):
    """`POST /api/sessions/{id}/messages/{message_id}/edit`: the user message said again."""

    message: str = Field(description="the message's new text, 1 to max_message_chars characters")
