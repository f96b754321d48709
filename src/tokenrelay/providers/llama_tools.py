"""Tool calls for the local model: the `<tool_call>` format, its grammar, and reading it back.

SmolLM2-135M's chat template (the GGUF's `tokenizer.chat_template`) is plain ChatML, with no
tool format of its own. The local model gets the Hermes-style one that SmolLM2's larger
sibling was trained on and many open models share: the tools listed as JSON inside `<tools>`
in the system message, a call written as

    <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>

and a result shown back as `<tool_response>…</tool_response>` (`format_call`, `format_result`,
used by `chat_template.message_to_dict`).

A llama.cpp grammar (GBNF; the calls' part from the tools' JSON schemas with llama-cpp-python's
`json_schema_to_gbnf`) makes the reply one of:

* `tool_choice` "required" or a tool's name: exactly one call of those tools, its arguments
  matching the schema. The grammar ends at `</tool_call>`, where only the end-of-turn token is
  left: the reply cannot run on.
* "auto": such a call, or an answer in plain text (whose first character is not `<`). The
  answer streams as it comes and ends at the model's own end of turn. (An answer inside a JSON
  string, the earlier form, could only end once the model closed the string, which
  SmolLM2-135M seldom did: it repeated itself to max_tokens.)
* "auto" once the conversation holds results since its last user message (and "none"): an
  answer in free text, with no grammar and no tool list (`may_call`). Shown its tools again,
  SmolLM2-135M repeats the call it has just made, round after round; the server's own tools
  stop the same way after one round (`pipelines/agent.py`, single shot). "required" or a
  name still asks for a call.

The reply's first character tells which it is (`ToolReply`): an answer streams from its first
token, a call is buffered and parsed when the reply ends. A call cut by max_tokens is no call:
the finish is "length", which the APIs report as OpenAI does (`incomplete`,
`max_output_tokens`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.providers.llama_structured import Constraint, schema_to_grammar

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

# an answer: any text that does not open a call (GBNF; `\x00` never occurs in text)
_ANSWER_RULE = "tr-answer ::= [^<\\x00] [^\\x00]*"


def format_call(call: ToolCall) -> str:
    """A call as the model writes it (for assistant turns of the history)."""
    body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"{CALL_OPEN}{body}{CALL_CLOSE}"


def format_result(content: str) -> str:
    """A tool's result as the model is shown it."""
    return f"<tool_response>\n{content}\n</tool_response>"


def chosen_tools(tools: Sequence[ToolSpec], tool_choice: str | None) -> list[ToolSpec]:
    """The tools a call may name: all of them, or the one `tool_choice` names."""
    chosen = [t for t in tools if tool_choice in (None, "auto", "required", t.name)]
    if not chosen:
        raise ValidationError(
            tr("tool_choice {value!r} names no offered tool", value=tool_choice),
            suggestion=tr(
                "use auto, none, required or one of: {names}",
                names=", ".join(t.name for t in tools),
            ),
        )
    return chosen


def call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The JSON schema of the object inside `<tool_call>`: a name and its arguments."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": t.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return branches[0] if len(branches) == 1 else {"oneOf": branches}


_ROOT = re.compile(r"(?<![\w-])root(?![\w-])")


def call_grammar(tools: Sequence[ToolSpec], *, may_answer: bool) -> str:
    """The GBNF of one reply: a call of `tools`, or (`may_answer`) an answer in plain text."""
    calls = _ROOT.sub("tr-call", schema_to_grammar(call_schema(tools)))
    reply = f'"{CALL_OPEN}" tr-call "{CALL_CLOSE}"'
    if may_answer:
        return f"root ::= {reply} | tr-answer\n{_ANSWER_RULE}\n{calls}"
    return f"root ::= {reply}\n{calls}"


def tool_instructions(tools: Sequence[ToolSpec], *, may_answer: bool) -> str:
    """The system message's part that lists the tools and the call format.

    Each tool is one line of JSON: its name, description and the properties of its arguments.
    Of the listings tried (this one; OpenAI's tool objects; a bulleted list, with the
    properties or the whole schema), this one gave SmolLM2-135M the right arguments most
    often, greedy, on four questions over a calculator and a weather tool (3 of 4; the others
    1 or 2)."""
    listed = "\n".join(
        json.dumps(
            {
                "name": t.name,
                "description": t.description,
                "arguments": t.parameters.get("properties", {}),
            },
            ensure_ascii=False,
        )
        for t in tools
    )
    how = (
        f'To call a function, reply with {CALL_OPEN}{{"name": <function-name>, '
        f'"arguments": <args-json-object>}}{CALL_CLOSE}.'
    )
    if may_answer:
        how += " Otherwise answer the user directly."
    return f"You can call functions. The functions:\n<tools>\n{listed}\n</tools>\n{how}"


def has_results(messages: Sequence[ChatMessage]) -> bool:
    """Whether tool results came back since the last user message."""
    for message in reversed(messages):
        if message.role == "tool":
            return True
        if message.role == "user":
            return False
    return False


def may_call(messages: Sequence[ChatMessage], tool_choice: str | None) -> bool:
    """Whether this reply may be a call (see the module docstring)."""
    if tool_choice == "none":
        return False
    return tool_choice not in (None, "auto") or not has_results(messages)


def tool_constraint(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], tool_choice: str | None
) -> Constraint | None:
    """The constraint of a request that offers `tools`; None when it offers none, or when no
    call may be made now: the answer is then free text, without the tool list. (A grammar
    that only kept it from opening a call cost about half as much again per token, measured
    on a busy 2-core machine: 60-64 ms against 38-50 ms.)"""
    if not tools or not may_call(messages, tool_choice):
        return None
    chosen = chosen_tools(tools, tool_choice)
    may_answer = tool_choice in (None, "auto")
    return Constraint(
        call_grammar(chosen, may_answer=may_answer),
        tool_instructions(chosen, may_answer=may_answer),
        tool_mode=True,
    )


def parse_tool_call(text: str) -> ToolCall:
    """A complete `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` as a ToolCall."""
    body = text.strip().removeprefix(CALL_OPEN).removesuffix(CALL_CLOSE)
    try:
        # not strict: the grammar's strings (llama-cpp-python's) admit raw control characters
        data = json.loads(body, strict=False)
    except json.JSONDecodeError as e:
        raise ProviderError(
            tr("the local model's tool call was cut off before its JSON was complete"),
            suggestion=tr("retry, or ask for the answer without tools"),
            code=ErrorCode.PROVIDER_ERROR,
            retryable=True,
        ) from e
    if not (isinstance(data, dict) and isinstance(data.get("name"), str)):
        raise ProviderError(
            tr("the local model's reply is not a tool call"),
            suggestion=tr("retry"),
            code=ErrorCode.PROVIDER_ERROR,
            retryable=True,
        )
    arguments = data.get("arguments")
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:12]}",
        name=data["name"],
        arguments=arguments if isinstance(arguments, dict) else {},
    )


class ToolReply:
    """One tool-mode reply as it grows: an answer's text streams at once, a call is kept.

    `feed(piece)` returns the text to stream now (empty for a call, and until the reply's
    first character is there); `call()` parses a finished call.
    """

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.kind: str = "undecided"  # "undecided" | "answer" | "call"

    def feed(self, piece: str) -> str:
        if self.kind == "answer":
            return piece
        self._pieces.append(piece)
        if self.kind == "undecided":
            held = "".join(self._pieces)
            if held:
                self.kind = "call" if held.startswith("<") else "answer"
                if self.kind == "answer":
                    self._pieces = []
                    return held
        return ""

    @property
    def complete(self) -> bool:
        """Whether a call's text is all there (not cut before its end)."""
        return self.kind == "call" and "".join(self._pieces).rstrip().endswith(CALL_CLOSE)

    def call(self) -> ToolCall:
        return parse_tool_call("".join(self._pieces))
