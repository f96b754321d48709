"""Run one tool call: validate its arguments, call it under a timeout, and map whatever happens
to a `ToolOutcome`. Never raises for a tool's fault: an exception, a timeout, arguments that do
not fit the schema, an unknown tool or a result that is not JSON all become an error outcome
that is shown to the model (which can then correct itself) and to the client.

The error is a message marked with `tr` (`i18n`): the model gets its English text (the
`tool` message, `ToolOutcome.content`; the model reads English best, and the history replays
it unchanged), the client the same message in its language (the `tool_result` event's
`error`), with `outcome` as the stable code (`error_code` on the event). A tool's own
`ToolError` message is used as it is given: marked with `tr` it is translated too.

Cancellation (`asyncio.CancelledError`) is not a tool fault and propagates. A sync tool runs in
a worker thread; on timeout the call is abandoned (Python cannot stop a thread), so sync tools
that may block for long should take their own timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pydantic_core import PydanticSerializationError, to_jsonable_python

from tokenrelay.i18n import tr
from tokenrelay.providers.base import ToolCall
from tokenrelay.tools.context import Progress, ToolContext, ToolError
from tokenrelay.tools.tool import Tool

logger = logging.getLogger("tokenrelay.tools")

Outcome = Literal[
    "ok", "error", "timeout", "invalid_arguments", "unknown_tool", "bad_result", "limit", "not_run"
]
MAX_RESULT_CHARS = 20_000  # what goes back to the model per call


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    call: ToolCall
    result: Any = None  # JSON-safe
    error: str | None = None  # a `tr` message (English as a str) or a plugin's own text
    outcome: Outcome = "ok"

    @property
    def ok(self) -> bool:
        return self.error is None

    def content(self) -> str:
        """The text the model sees as this call's `tool` message (an error in English)."""
        error = None if self.error is None else str.__str__(self.error)
        payload = {"error": error} if error is not None else self.result
        text = json.dumps(payload, ensure_ascii=False)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + " …(truncated)"
        return text


def failed(call: ToolCall, message: str, outcome: Outcome = "error") -> ToolOutcome:
    return ToolOutcome(call=call, error=message, outcome=outcome)


async def run_tool(
    item: Tool | None,
    call: ToolCall,
    context: ToolContext,
    *,
    timeout_s: float,
    available: list[str] | None = None,
) -> ToolOutcome:
    """Run `call` with `item` (None: the model named a tool that is not offered)."""
    if item is None:
        names = ", ".join(available or []) or tr("none")
        return failed(
            call,
            tr(
                "unknown tool {name!r}; the tools you can call are: {names}",
                name=call.name,
                names=names,
            ),
            "unknown_tool",
        )
    try:
        kwargs = item.bind(call.arguments, context)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        return failed(
            call,
            tr(
                "invalid arguments for {tool}: {problems}. Expected: {schema}",
                tool=item.name,
                problems=problems,
                schema=json.dumps(item.parameters, ensure_ascii=False),
            ),
            "invalid_arguments",
        )
    try:
        async with asyncio.timeout(timeout_s):
            value = await _invoke(item, kwargs, context)
    except TimeoutError:
        return failed(
            call,
            tr(
                "{tool} took longer than {seconds:g} s and was stopped",
                tool=item.name,
                seconds=timeout_s,
            ),
            "timeout",
        )
    except ToolError as exc:
        return failed(call, tool_error_text(exc) or tr("{tool} failed", tool=item.name))
    except Exception as exc:
        logger.warning("tool %s raised", item.name, exc_info=True)
        return failed(call, crashed(item.name, exc))
    try:
        safe = to_jsonable_python(value)
        json.dumps(safe, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        return failed(
            call,
            tr(
                "{tool} returned a {kind}, which is not JSON ({error}); tools must return"
                " JSON-compatible values (dict, list, str, number, bool, None)",
                tool=item.name,
                kind=type(value).__name__,
                error=str(exc),
            ),
            "bad_result",
        )
    return ToolOutcome(call=call, result=safe)


def tool_error_text(exc: ToolError) -> str:
    """A `ToolError`'s message as it was given: `str(exc)` would drop a `tr` message's id."""
    given = exc.args[0] if len(exc.args) == 1 else None
    return given if isinstance(given, str) else str(exc)


def crashed(tool: str, exc: BaseException) -> str:
    """The error of a tool that raised something other than a `ToolError`."""
    return tr("{tool} failed: {error}", tool=tool, error=f"{type(exc).__name__}: {exc}")


async def _invoke(item: Tool, kwargs: dict[str, Any], context: ToolContext) -> Any:
    if item.kind == "async":
        return await item.fn(**kwargs)
    if item.kind == "asyncgen":
        result: Any = None
        agen = item.fn(**kwargs)
        try:
            async for value in agen:
                if isinstance(value, Progress):
                    await context.progress(value.message)
                else:
                    result = value
        finally:
            await agen.aclose()
        return result
    return await asyncio.to_thread(item.fn, **kwargs)
