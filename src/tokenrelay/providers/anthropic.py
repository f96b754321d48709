"""Anthropic Messages streaming over the official `anthropic` SDK.

The stream is `message_start` (input usage) -> content blocks (`text_delta`, or a `tool_use`
block whose `input_json_delta` pieces are assembled) -> `message_delta` (stop reason, output
usage) -> `message_stop`. `ping` is skipped by the SDK; an in-stream `event: error` (e.g.
`overloaded_error`) is raised by the SDK as a status error with HTTP 200 and mapped here by its
error type. The SDK retries (`max_retries`) only before the body starts.

Not passed: `response_format={"type": "json_object"}` (Anthropic only takes a JSON schema,
which goes to `output_config.format`). Refused by the API before a stream starts (`sampling`):
`temperature` and `top_p` (this SDK's Messages API has no such parameters any more), `seed`
and the penalties, which Anthropic does not have. `stop` is `stop_sequences`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers._errors import (
    Upstream,
    classify,
    missing_key,
    missing_sdk,
    retry_after_from_headers,
    stream_cut,
    timed_out,
    unreachable,
    upstream_error,
)
from tokenrelay.providers._formats import configured_model, json_format, settle_finish
from tokenrelay.providers._sdk_stream import relay
from tokenrelay.providers._toolcalls import ToolCallAccumulator
from tokenrelay.providers.base import (
    ChatMessage,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCallPart,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:
    import httpx2
    from anthropic.types import RawMessageStreamEvent

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider:
    """Claude through the Messages API (async, streaming)."""

    name = "anthropic"
    # this SDK's Messages API has no temperature or top_p any more, Anthropic no seed and no
    # penalties: those are refused
    sampling = frozenset({"stop"})

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        model: str = "claude-sonnet-4-6",
        max_tokens: int = 1024,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        # the SDK is an optional extra: imported here (its absence is a ProviderError that
        # says how to install it) and in the methods below, never when the module loads
        try:
            import anthropic
        except ImportError as e:
            raise missing_sdk("anthropic", "anthropic") from e
        if not api_key:
            raise missing_key("ANTHROPIC_API_KEY")
        self.default_model = model
        self._max_tokens = max_tokens
        self._timeout_s = timeout_s
        self._upstream = Upstream(label="Anthropic", key_env="ANTHROPIC_API_KEY", base_url=base_url)
        # the SDK uses httpx2 and refuses `httpx` clients: inject an `httpx2.AsyncClient`
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        key = settings.anthropic_api_key
        return cls(
            api_key=key.get_secret_value() if key is not None else None,
            base_url=settings.anthropic_base_url,
            model=configured_model(settings, "anthropic", settings.anthropic_model),
            max_tokens=settings.max_tokens,
            timeout_s=settings.provider_timeout_s,
            max_retries=settings.provider_max_retries,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def request_params(self, request: ProviderRequest) -> dict[str, Any]:
        """The Messages body for `request` (without `stream`)."""
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": request.model or self.default_model,
            "max_tokens": request.max_tokens or self._max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.tools:
            params["tools"] = [to_anthropic_tool(t) for t in request.tools]
            if request.tool_choice:
                params["tool_choice"] = to_anthropic_tool_choice(request.tool_choice)
        fmt = json_format(request.response_format)
        if fmt is not None and fmt.schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema}}
        extra = request.extra.get("anthropic")
        if isinstance(extra, dict):
            params["extra_body"] = extra
        return params

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        import anthropic

        return relay(
            lambda: self._client.messages.create(stream=True, **self.request_params(request)),
            EventReader(self._upstream),
            anthropic.AnthropicError,
            self.map_error,
        )

    def map_error(self, e: Exception) -> ProviderError:
        """Our ProviderError for an `anthropic` SDK exception."""
        import anthropic

        upstream = self._upstream
        if isinstance(e, anthropic.APITimeoutError):
            return timed_out(upstream, self._timeout_s)
        if isinstance(e, anthropic.APIConnectionError):
            return unreachable(upstream, e.__cause__ or e)
        if isinstance(e, anthropic.APIStatusError):
            # status 200: an `event: error` inside the stream; its error type decides
            status = e.status_code if e.status_code != 200 else None
            detail = e.api_message or e.message
            code = classify(status, (e.type, e.error_code), detail)
            retry_after = (
                retry_after_from_headers(e.response.headers)
                if code is ErrorCode.PROVIDER_RATE_LIMIT
                else None
            )
            kind = f"{e.type}: " if e.type else ""
            return upstream_error(
                upstream, code, f"{kind}{detail}", retry_after_s=retry_after, status=status
            )
        return upstream_error(upstream, ErrorCode.PROVIDER_ERROR, str(e))


class EventReader:
    """Turns raw Messages stream events into provider events. No I/O."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._tools = ToolCallAccumulator()
        self._called_tools = False
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._finish: FinishReason | None = None

    def feed(self, event: RawMessageStreamEvent) -> list[ProviderEvent]:
        if event.type == "message_start":
            usage = event.message.usage
            self._prompt_tokens = (
                (usage.input_tokens or 0)
                + (usage.cache_creation_input_tokens or 0)
                + (usage.cache_read_input_tokens or 0)
            )
            self._completion_tokens = usage.output_tokens or 0
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                initial = block.input if isinstance(block.input, dict) else None
                self._tools.start(event.index, id=block.id, name=block.name, arguments=initial)
            elif block.type == "text" and block.text:
                return [TextDelta(block.text)]
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                return [TextDelta(delta.text)]
            if delta.type == "input_json_delta":
                self._tools.add(event.index, arguments=delta.partial_json)
        elif event.type == "content_block_stop":
            call = self._tools.pop(event.index)
            if call is not None:
                self._called_tools = True
                return [ToolCallPart(call)]
        elif event.type == "message_delta":
            if event.delta.stop_reason:
                self._finish = _FINISH.get(event.delta.stop_reason, "stop")
            self._completion_tokens = event.usage.output_tokens or self._completion_tokens
            if event.usage.input_tokens:
                self._prompt_tokens = (
                    event.usage.input_tokens
                    + (event.usage.cache_creation_input_tokens or 0)
                    + (event.usage.cache_read_input_tokens or 0)
                )
        return []

    def end(self) -> list[ProviderEvent]:
        if self._finish is None:
            raise stream_cut(self._upstream)
        events: list[ProviderEvent] = [ToolCallPart(c) for c in self._tools.finish()]
        self._called_tools = self._called_tools or bool(events)
        events.append(Usage(self._prompt_tokens, self._completion_tokens))
        events.append(Finish(settle_finish(self._finish, called_tools=self._called_tools)))
        return events


def to_anthropic_messages(
    messages: tuple[ChatMessage, ...],
) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Messages API turns); consecutive tool results share one user turn."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        elif m.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or "",
                "content": m.content,
            }
            if is_error_result(m.content):
                block["is_error"] = True
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in m.tool_calls
            ]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": m.role, "content": m.content})
    return "\n\n".join(s for s in system if s), out


def is_error_result(content: str) -> bool:
    """A failed tool call's result: the tool layer sends it as `{"error": "..."}`
    (docs/tools.md), live and when the history is replayed; Anthropic wants `is_error` then."""
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return isinstance(value, dict) and list(value) == ["error"] and isinstance(value["error"], str)


def to_anthropic_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.parameters or {"type": "object", "properties": {}},
    }


def to_anthropic_tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": choice}
