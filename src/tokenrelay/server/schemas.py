"""Request bodies of the native API. Unknown fields are errors, so typos never pass silently."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.providers.options import ScriptedOptions

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"


class RagOptions(BaseModel):
    """Ground the answer in the user's documents (see docs/retrieval.md)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=50)
    min_score: float | None = Field(default=None, ge=0.0)


class ChatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(default=None, max_length=64, description="provider name")
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    scripted: ScriptedOptions | None = None
    rag: RagOptions | bool | None = Field(
        default=None, description="retrieval: an object, true (server defaults) or false (off)"
    )
    enable_tools: bool = Field(default=True, description="offer the server's tools to the model")
    tools: list[str] | None = Field(
        default=None, max_length=64, description="allow-list of tool names (default: all)"
    )
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


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
