"""Per-request provider options: the schema of a request's `options.<provider>`.

Data only, apart from every provider's code: the HTTP request bodies (server/schemas.py,
server/openai_format.py, planner/models.py) validate these, so a bad value is a 422 before a
stream starts, and the provider reads the validated values back from `ProviderRequest.extra`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.errors import ErrorCode


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class ScriptedOptions(BaseModel):
    """`options.scripted` of a chat request."""

    model_config = ConfigDict(extra="forbid")

    reply: str | None = Field(default=None, max_length=1_000_000)
    tokens: int | None = Field(default=None, ge=1, le=100_000)
    delay_ms: float = Field(default=0.0, ge=0, le=60_000)
    error_after: int | None = Field(default=None, ge=0)
    error_code: ErrorCode = ErrorCode.PROVIDER_ERROR
    stall_after: int | None = Field(default=None, ge=0)
    # go silent for `pause_ms` after `pause_after` pieces, then go on (a model that thinks)
    pause_after: int | None = Field(default=None, ge=0)
    pause_ms: float = Field(default=0.0, ge=0, le=600_000)
    # asked for in the first round only; the reply text follows once tool results come back
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    # ask for `tool_calls` in this many rounds of one turn before replying (runaway-loop tests)
    tool_rounds: int = Field(default=1, ge=1, le=100)
    # one reply per request: the k-th when the request holds k assistant messages (the last
    # one beyond); e.g. a workflow's draft and its refinements. `reply` when empty.
    replies: list[str] = Field(default_factory=list, max_length=100)
