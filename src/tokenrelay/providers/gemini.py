"""Gemini over the official `google-genai` SDK (`client.aio.models.generate_content_stream`).

The wire is `POST .../models/{model}:streamGenerateContent?alt=sse`; each `data:` line is a
`GenerateContentResponse` whose parts carry text or a complete `functionCall` (Gemini does not
split call arguments), and whose `usageMetadata` is cumulative. An `{"error": ...}` data line
inside a 200 stream is raised by the SDK as an `APIError` and mapped here.

The SDK's own retry (`HttpRetryOptions`) runs before the body starts. The SDK leaves connection
failures as plain `httpx` errors; they are mapped too. The adapter always hands the SDK an httpx
client it knows, and tracks the responses each stream opened (a response event hook), so the
generator's `finally` closes them at once on cancel or `aclose()`, however deep the SDK's own
generators are suspended.

Thought signatures: Gemini attaches `thoughtSignature` to function-call parts and wants it back
with the call in the next request. `ToolCall` has no room for it, so the provider keeps a bounded
map from call id to signature and puts it back when it converts history.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self

import httpx

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers._errors import (
    Upstream,
    classify,
    duration_seconds,
    missing_key,
    missing_sdk,
    stream_cut,
    timed_out,
    unreachable,
    upstream_error,
)
from tokenrelay.providers._formats import configured_model, json_format, settle_finish
from tokenrelay.providers._sdk_stream import relay
from tokenrelay.providers._toolcalls import new_call_id
from tokenrelay.providers.base import (
    ALL_SAMPLING,
    ChatMessage,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallPart,
    Usage,
)

if TYPE_CHECKING:
    import httpx2
    from google.genai import types

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **{
        reason: "content_filter"
        for reason in (
            "SAFETY",
            "RECITATION",
            "LANGUAGE",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "MODEL_ARMOR",
        )
    },
}
# the model itself failed to produce a usable answer: an error, not a quiet stop
_FAILED = frozenset(
    {
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MISSING_THOUGHT_SIGNATURE",
        "MALFORMED_RESPONSE",
    }
)
_SIGNATURES_KEPT = 4096
_open_responses: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "tokenrelay_gemini_open_responses", default=None
)


async def _track_response(response: Any) -> None:
    """httpx response hook: remember responses opened by the stream currently asking."""
    bucket = _open_responses.get()
    if bucket is not None:
        bucket.append(response)


class GeminiProvider:
    """Gemini API (Google AI Studio keys) through `google-genai`, async streaming."""

    name = "gemini"
    sampling = ALL_SAMPLING

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        model: str = "gemini-2.5-flash",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        retry_initial_delay_s: float = 1.0,
        http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None,
    ) -> None:
        # the SDK is an optional extra: imported here (its absence is a ProviderError that
        # says how to install it) and in the methods below, never when the module loads
        try:
            from google import genai
            from google.genai import types
        except ImportError as e:
            raise missing_sdk("google-genai", "gemini") from e
        if not api_key:
            raise missing_key("GEMINI_API_KEY", also="GOOGLE_API_KEY")
        self.default_model = model
        self._timeout_s = timeout_s
        self._upstream = Upstream(label="Gemini", key_env="GEMINI_API_KEY", base_url=base_url)
        self._signatures: OrderedDict[str, bytes] = OrderedDict()
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        hooks = self._http.event_hooks
        self._http.event_hooks = {
            **hooks,
            "response": [*hooks.get("response", []), _track_response],
        }
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout_s * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=max_retries + 1, initial_delay=retry_initial_delay_s
                ),
                httpx_async_client=self._http,
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        key = settings.gemini_api_key
        return cls(
            api_key=key.get_secret_value() if key is not None else None,
            base_url=settings.gemini_base_url,
            model=configured_model(settings, "gemini", settings.gemini_model),
            timeout_s=settings.provider_timeout_s,
            max_retries=settings.provider_max_retries,
        )

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        if self._own_http:
            await self._http.aclose()

    def request_config(self, request: ProviderRequest) -> types.GenerateContentConfig:
        from google.genai import types

        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        config = types.GenerateContentConfig(
            system_instruction=system or None,
            temperature=request.temperature,
            max_output_tokens=request.max_tokens,
            top_p=request.top_p,
            stop_sequences=list(request.stop) if request.stop else None,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            # we return calls to our caller; the SDK must never run functions itself
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if request.tools:
            config.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=t.name,
                            description=t.description,
                            parameters_json_schema=t.parameters or None,
                        )
                        for t in request.tools
                    ]
                )
            ]
            if request.tool_choice:
                config.tool_config = _tool_config(request.tool_choice)
        fmt = json_format(request.response_format)
        if fmt is not None:
            config.response_mime_type = "application/json"
            config.response_json_schema = fmt.schema
        return config

    def contents(self, messages: tuple[ChatMessage, ...]) -> list[types.Content]:
        """Our history as Gemini contents; consecutive tool results share one user turn."""
        from google.genai import types

        names: dict[str, str] = {}
        out: list[types.Content] = []
        for m in messages:
            if m.role == "system":
                continue
            if m.role == "tool":
                call_id = m.tool_call_id or ""
                part = types.Part(
                    function_response=types.FunctionResponse(
                        id=call_id or None,
                        name=m.name or names.get(call_id, ""),
                        response=_tool_output(m.content),
                    )
                )
                last = out[-1] if out else None
                if last and last.role == "user" and last.parts and last.parts[0].function_response:
                    last.parts.append(part)
                else:
                    out.append(types.Content(role="user", parts=[part]))
                continue
            parts = [types.Part(text=m.content)] if m.content else []
            for call in m.tool_calls:
                names[call.id] = call.name
                parts.append(
                    types.Part(
                        function_call=types.FunctionCall(
                            id=call.id, name=call.name, args=call.arguments
                        ),
                        thought_signature=self._signatures.get(call.id),
                    )
                )
            if parts:  # Gemini refuses a turn without parts
                role = "model" if m.role == "assistant" else "user"
                out.append(types.Content(role=role, parts=parts))
        return out

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        from google.genai import errors

        async def open_stream() -> _TrackedChunks:
            chunks = await self._client.aio.models.generate_content_stream(
                model=request.model or self.default_model,
                contents=self.contents(request.messages),
                config=self.request_config(request),
            )
            return _TrackedChunks(chunks)

        return relay(
            open_stream,
            ResponseReader(self._upstream, self._remember_signature),
            (errors.APIError, errors.UnknownApiResponseError, *_transport_errors()),
            self.map_error,
        )

    def _remember_signature(self, call_id: str, signature: bytes) -> None:
        self._signatures[call_id] = signature
        while len(self._signatures) > _SIGNATURES_KEPT:
            self._signatures.popitem(last=False)

    def map_error(self, e: Exception) -> ProviderError:
        """Our ProviderError for a `google-genai` error or an httpx transport error."""
        from google.genai import errors

        upstream = self._upstream
        if isinstance(e, errors.APIError):
            error = e.details.get("error", e.details) if isinstance(e.details, dict) else {}
            infos = error.get("details") if isinstance(error, dict) else None
            infos = [i for i in infos if isinstance(i, dict)] if isinstance(infos, list) else []
            reasons = [i.get("reason") for i in infos if isinstance(i.get("reason"), str)]
            detail = e.message or str(e)
            code = classify(
                e.code if isinstance(e.code, int) else None, (e.status, *reasons), detail
            )
            retry_after = None
            if code is ErrorCode.PROVIDER_RATE_LIMIT:
                delays = [duration_seconds(i.get("retryDelay")) for i in infos]
                retry_after = next((d for d in delays if d is not None), None)
            status = f"{e.status}: " if e.status else ""
            return upstream_error(
                upstream, code, f"{status}{detail}", retry_after_s=retry_after, status=e.code
            )
        if isinstance(e, errors.UnknownApiResponseError):
            return upstream_error(upstream, ErrorCode.PROVIDER_ERROR, str(e))
        if "Timeout" in type(e).__name__:
            return timed_out(upstream, self._timeout_s)
        return unreachable(upstream, e)


class _TrackedChunks:
    """The SDK's chunk iterator, noting the httpx responses each step opens (`_track_response`
    sees them through `_open_responses`), so that `close()` closes them at once, however deep
    the SDK's own generators are suspended."""

    def __init__(self, chunks: AsyncIterator[types.GenerateContentResponse]) -> None:
        self._chunks = chunks
        self._opened: list[Any] = []

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> types.GenerateContentResponse:
        token = _open_responses.set(self._opened)
        try:
            return await anext(self._chunks)
        finally:
            _open_responses.reset(token)

    async def close(self) -> None:
        for response in self._opened:
            with contextlib.suppress(Exception):
                await response.aclose()
        with contextlib.suppress(Exception):
            await self._chunks.aclose()  # type: ignore[attr-defined]


def _transport_errors() -> tuple[type[Exception], ...]:
    found: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        found.append(httpx2.TransportError)
    return tuple(found)


class ResponseReader:
    """Turns `GenerateContentResponse` chunks into provider events. No I/O."""

    def __init__(self, upstream: Upstream, on_signature: Any = None) -> None:
        self._upstream = upstream
        self._on_signature = on_signature
        self._called_tools = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: types.GenerateContentResponse) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        meta = chunk.usage_metadata
        if meta is not None:
            self._usage = Usage(
                prompt_tokens=meta.prompt_token_count or 0,
                completion_tokens=(meta.candidates_token_count or 0)
                + (meta.thoughts_token_count or 0),
            )
        candidate = chunk.candidates[0] if chunk.candidates else None
        if candidate is None:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason:
                self._finish = "content_filter"
            return events
        for part in (candidate.content.parts if candidate.content else None) or ():
            if part.function_call is not None:
                call = part.function_call
                call_id = call.id or new_call_id()
                if part.thought_signature and self._on_signature is not None:
                    self._on_signature(call_id, part.thought_signature)
                self._called_tools = True
                events.append(
                    ToolCallPart(ToolCall(call_id, call.name or "", dict(call.args or {})))
                )
            elif part.text and not part.thought:
                events.append(TextDelta(part.text))
        if candidate.finish_reason:
            reason = str(getattr(candidate.finish_reason, "value", candidate.finish_reason))
            if reason in _FAILED:
                message = candidate.finish_message or reason
                raise upstream_error(
                    self._upstream, ErrorCode.PROVIDER_ERROR, f"{reason}: {message}"
                )
            self._finish = _FINISH.get(reason, "stop")
        return events

    def end(self) -> list[ProviderEvent]:
        if self._finish is None:
            raise stream_cut(self._upstream)
        events: list[ProviderEvent] = [self._usage] if self._usage is not None else []
        events.append(Finish(settle_finish(self._finish, called_tools=self._called_tools)))
        return events


def _tool_config(choice: str) -> types.ToolConfig:
    from google.genai import types

    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if choice in modes:
        fcc = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode(modes[choice]))
    else:
        fcc = types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[choice]
        )
    return types.ToolConfig(function_calling_config=fcc)


def _tool_output(content: str) -> dict[str, Any]:
    """A tool result as Gemini's `functionResponse.response` object (`{"output": ...}`)."""
    try:
        value = json.loads(content)
    except ValueError:
        value = content
    return value if isinstance(value, dict) else {"output": value}
