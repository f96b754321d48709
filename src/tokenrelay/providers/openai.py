"""OpenAI Chat Completions streaming, and any OpenAI-compatible server (vLLM, Ollama, LM Studio,
llama.cpp's server) through `openai_base_url`.

Streams with `stream_options.include_usage`, so the last chunk (empty `choices`) carries usage.
Tool calls arrive as argument pieces keyed by `index`; they are assembled and yielded complete
when the choice finishes. Retries are the SDK's own (`max_retries`), which only retry before the
response body starts, so a retry never repeats tokens the client already has. Cancellation and
`aclose()` of the generator close the upstream response in `finally`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers._errors import (
    Upstream,
    classify,
    missing_key,
    missing_sdk,
    retry_after_from_headers,
    status_from,
    stream_cut,
    timed_out,
    unreachable,
    upstream_error,
)
from tokenrelay.providers._formats import (
    arguments_text,
    configured_model,
    json_format,
    settle_finish,
)
from tokenrelay.providers._sdk_stream import relay
from tokenrelay.providers._toolcalls import ToolCallAccumulator
from tokenrelay.providers.base import (
    ALL_SAMPLING,
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
    import httpx
    import httpx2
    from openai.types.chat import ChatCompletionChunk

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
# OpenAI-compatible servers (vLLM, Ollama, llama.cpp) ignore the key, but the SDK wants one
PLACEHOLDER_KEY = "sk-no-key-required"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIProvider:
    """Chat Completions over the official `openai` SDK (async, streaming)."""

    name = "openai"
    sampling = ALL_SAMPLING

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None,
    ) -> None:
        # the SDK is an optional extra: imported here (its absence is a ProviderError that
        # says how to install it) and in the methods below, never when the module loads
        try:
            import openai
        except ImportError as e:
            raise missing_sdk("openai", "openai") from e
        compatible = bool(base_url) and base_url != OPENAI_DEFAULT_URL
        if not api_key:
            if not compatible:
                raise missing_key("OPENAI_API_KEY")
            api_key = PLACEHOLDER_KEY
        self.default_model = model
        self.base_url = base_url or OPENAI_DEFAULT_URL
        # real OpenAI wants max_completion_tokens; compatible servers know max_tokens
        self._max_tokens_field = "max_tokens" if compatible else "max_completion_tokens"
        self._timeout_s = timeout_s
        self._upstream = Upstream(
            label=f"the OpenAI-compatible server at {base_url}" if compatible else "OpenAI",
            key_env="OPENAI_API_KEY",
            base_url=self.base_url,
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,  # type: ignore[arg-type]  # the SDK accepts httpx too
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        key = settings.openai_api_key
        return cls(
            api_key=key.get_secret_value() if key is not None else None,
            base_url=settings.openai_base_url,
            model=configured_model(settings, "openai", settings.openai_model),
            timeout_s=settings.provider_timeout_s,
            max_retries=settings.provider_max_retries,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def request_params(self, request: ProviderRequest) -> dict[str, Any]:
        """The Chat Completions body for `request` (without `stream`)."""
        params: dict[str, Any] = {
            "model": request.model or self.default_model,
            "messages": [to_openai_message(m) for m in request.messages],
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params[self._max_tokens_field] = request.max_tokens
        for name in ("top_p", "seed", "frequency_penalty", "presence_penalty"):
            value = getattr(request, name)
            if value is not None:
                params[name] = value
        if request.stop:
            params["stop"] = list(request.stop)
        if request.tools:
            params["tools"] = [to_openai_tool(t) for t in request.tools]
            if request.tool_choice:
                params["tool_choice"] = to_openai_tool_choice(request.tool_choice)
        fmt = json_format(request.response_format)
        if fmt is not None and fmt.schema is None:
            params["response_format"] = {"type": "json_object"}
        elif fmt is not None:
            spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            params["response_format"] = {"type": "json_schema", "json_schema": spec}
        extra = request.extra.get("openai")
        if isinstance(extra, dict):
            params["extra_body"] = extra
        return params

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        import openai

        return relay(
            lambda: self._client.chat.completions.create(
                stream=True, **self.request_params(request)
            ),
            ChunkReader(self._upstream),
            openai.OpenAIError,
            self.map_error,
        )

    def map_error(self, e: Exception) -> ProviderError:
        """Our ProviderError for an `openai` SDK exception."""
        import openai

        upstream = self._upstream
        if isinstance(e, openai.APITimeoutError):
            return timed_out(upstream, self._timeout_s)
        if isinstance(e, openai.APIConnectionError):
            return unreachable(upstream, e.__cause__ or e)
        if isinstance(e, openai.APIStatusError):
            return _from_body(upstream, e.status_code, e.body, e.message, e.response.headers)
        if isinstance(e, openai.APIError):  # an error event inside a 200 stream
            body = e.body if isinstance(e.body, Mapping) else {}
            return _from_body(upstream, status_from(body.get("code")), body, e.message, None)
        return upstream_error(upstream, ErrorCode.PROVIDER_ERROR, str(e))


def _from_body(
    upstream: Upstream,
    status: int | None,
    body: object,
    fallback: str,
    headers: Mapping[str, str] | None,
) -> ProviderError:
    fields = body if isinstance(body, Mapping) else {}
    message = fields.get("message")
    detail = message if isinstance(message, str) and message else fallback
    kinds = (_str(fields.get("type")), _str(fields.get("code")))
    code = classify(status, kinds, detail)
    retry_after = (
        retry_after_from_headers(headers) if code is ErrorCode.PROVIDER_RATE_LIMIT else None
    )
    return upstream_error(upstream, code, detail, retry_after_s=retry_after, status=status)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class ChunkReader:
    """Turns `ChatCompletionChunk`s into provider events. No I/O; `end()` checks completeness."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._tools = ToolCallAccumulator()
        self._called_tools = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        if chunk.usage is not None:
            self._usage = Usage(
                prompt_tokens=chunk.usage.prompt_tokens or 0,
                completion_tokens=chunk.usage.completion_tokens or 0,
            )
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    events.append(TextDelta(delta.content))
                if delta.refusal:
                    events.append(TextDelta(delta.refusal))
                for position, call in enumerate(delta.tool_calls or ()):
                    function = call.function
                    self._tools.add(
                        call.index if call.index is not None else position,
                        id=call.id,
                        name=function.name if function else None,
                        arguments=(function.arguments or "") if function else "",
                    )
            if choice.finish_reason:
                self._finish = _FINISH.get(choice.finish_reason, "stop")
                events.extend(self._flush_tools())
        return events

    def end(self) -> list[ProviderEvent]:
        events = self._flush_tools()
        if self._finish is None:
            raise stream_cut(self._upstream)
        if self._usage is not None:
            events.append(self._usage)
        events.append(Finish(settle_finish(self._finish, called_tools=self._called_tools)))
        return events

    def _flush_tools(self) -> list[ProviderEvent]:
        calls = self._tools.finish()
        self._called_tools = self._called_tools or bool(calls)
        return [ToolCallPart(call) for call in calls]


def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments_text(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name and message.role in ("user", "assistant", "system"):
        out["name"] = message.name
    return out


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


def to_openai_tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}
