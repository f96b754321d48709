"""The agent loop end to end with the native tool calling of each remote provider.

`POST /api/chat/stream` on the real app (uvicorn), whose provider talks through its real SDK to
a small HTTP server on 127.0.0.1 speaking that provider's streaming wire format. The first
request is answered with a tool call; the loop runs the tool; the second request must carry the
assistant's call and the tool's result in the provider's own format (the fake refuses it with a
400 otherwise, as the real API does), and is answered with text. A second user turn in the same
session must replay the whole exchange from the stored history.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import StreamResult, chat_stream
from tests.providers.remote_wire import Recorded, Reply, Transcript, WireServer
from tokenrelay.providers.anthropic import to_anthropic_messages
from tokenrelay.providers.base import ChatMessage, ToolCall

Turn = dict[str, Any]
SSE = (("content-type", "text/event-stream; charset=utf-8"),)
JSON = (("content-type", "application/json"),)
SIGNATURE = base64.b64encode(b"\x0a\x93\x02thought-signature-of-the-calculate-call").decode()
SAMPLES = ["tests.tools.sample_tools"]  # `boom` always raises


def sse(*events: dict[str, Any], named: bool = False, done: bool = False) -> bytes:
    """An SSE body: `data:` lines (OpenAI, Gemini) or `event:` + `data:` (Anthropic)."""
    out = b""
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        out += f"{head}data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
    return out + (b"data: [DONE]\n\n" if done else b"")


def stream_of(body: bytes) -> Transcript:
    return Transcript(200, "OK", SSE, body)


# -- each provider's wire format --------------------------------------------------------------


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-Bm1loop7kQ2rT9",
        "object": "chat.completion.chunk",
        "created": 1750420381,
        "model": "gpt-4.1-mini-2025-04-14",
        "system_fingerprint": "fp_6f2eabb9a5",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def _openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {**_openai_chunk({}), "choices": [], "usage": usage}


def openai_tool_call(call_id: str, name: str, args: dict[str, Any], preface: str) -> Transcript:
    text = json.dumps(args)
    pieces = [text[: len(text) // 2], text[len(text) // 2 :]]
    start = {"index": 0, "id": call_id, "type": "function"}
    chunks = [_openai_chunk({"role": "assistant", "content": preface or None})]
    chunks.append(
        _openai_chunk({"tool_calls": [{**start, "function": {"name": name, "arguments": ""}}]})
    )
    chunks += [
        _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces
    ]
    chunks += [_openai_chunk({}, "tool_calls"), _openai_usage(80, 18)]
    return stream_of(sse(*chunks, done=True))


def openai_text(pieces: list[str]) -> Transcript:
    chunks = [_openai_chunk({"role": "assistant", "content": ""})]
    chunks += [_openai_chunk({"content": p}) for p in pieces]
    chunks += [_openai_chunk({}, "stop"), _openai_usage(120, 9)]
    return stream_of(sse(*chunks, done=True))


def _anthropic_start(input_tokens: int) -> dict[str, Any]:
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_01LoopTr1pXq",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return {"type": "message_start", "message": message}


def _anthropic_text_block(index: int, pieces: list[str]) -> list[dict[str, Any]]:
    block = {"type": "text", "text": ""}
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": p},
            }
            for p in pieces
        ),
        {"type": "content_block_stop", "index": index},
    ]


def _anthropic_end(stop_reason: str, output_tokens: int) -> list[dict[str, Any]]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]


def anthropic_tool_call(call_id: str, name: str, args: dict[str, Any], preface: str) -> Transcript:
    events = [_anthropic_start(410)]
    index = 0
    if preface:
        events += _anthropic_text_block(0, [preface])
        index = 1
    text = json.dumps(args)
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    events.append({"type": "content_block_start", "index": index, "content_block": block})
    events.append({"type": "ping"})
    for piece in ("", text[:5], text[5:]):
        delta = {"type": "input_json_delta", "partial_json": piece}
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
    events.append({"type": "content_block_stop", "index": index})
    events += _anthropic_end("tool_use", 52)
    return stream_of(sse(*events, named=True))


def anthropic_text(pieces: list[str]) -> Transcript:
    events = [
        _anthropic_start(520),
        *_anthropic_text_block(0, pieces),
        *_anthropic_end("end_turn", 11),
    ]
    return stream_of(sse(*events, named=True))


def _gemini_chunk(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 64, "candidatesTokenCount": 12, "thoughtsTokenCount": 40}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "kq1oaLoopRt3",
    }


def gemini_tool_call(call_id: str, name: str, args: dict[str, Any], preface: str) -> Transcript:
    # Gemini sends no call id: the adapter makes one (`call_id` is not used)
    parts: list[dict[str, Any]] = [{"text": preface}] if preface else []
    parts.append({"functionCall": {"name": name, "args": args}, "thoughtSignature": SIGNATURE})
    return stream_of(sse(_gemini_chunk(parts, "STOP")))


def gemini_text(pieces: list[str]) -> Transcript:
    chunks = [_gemini_chunk([{"text": p}]) for p in pieces]
    chunks.append(_gemini_chunk([{"text": ""}], "STOP"))
    return stream_of(sse(*chunks))


# -- the conversation a request carries, in each provider's format ----------------------------


def openai_turns(body: dict[str, Any]) -> list[Turn]:
    return [m for m in body["messages"] if m["role"] != "system"]


def openai_call(text: str, call_id: str, name: str, args: dict[str, Any]) -> Turn:
    function = {"name": name, "arguments": json.dumps(args)}
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


def openai_result(call_id: str, name: str, content: str, error: bool) -> Turn:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def openai_problem(body: dict[str, Any]) -> str | None:
    asked: set[str] = set()
    for m in body["messages"]:
        for call in m.get("tool_calls") or ():
            asked.add(call["id"])
            json.loads(call["function"]["arguments"])  # a JSON string, as OpenAI wants
        if m["role"] == "tool" and m.get("tool_call_id") not in asked:
            return "messages with role 'tool' must be a response to a preceding 'tool_calls'"
    return None


def anthropic_turns(body: dict[str, Any]) -> list[Turn]:
    return list(body["messages"])


def anthropic_call(text: str, call_id: str, name: str, args: dict[str, Any]) -> Turn:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    return {"role": "assistant", "content": blocks}


def anthropic_result(call_id: str, name: str, content: str, error: bool) -> Turn:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if error:
        block["is_error"] = True
    return {"role": "user", "content": [block]}


def anthropic_problem(body: dict[str, Any]) -> str | None:
    previous: list[Any] = []
    for m in body["messages"]:
        blocks = m["content"] if isinstance(m["content"], list) else []
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        uses = {b["id"] for b in previous if b["type"] == "tool_use"}
        if results and (m["role"] != "user" or not set(results) <= uses):
            return "tool_result block(s) without a matching tool_use in the previous message"
        previous = blocks
    return None


def gemini_turns(body: dict[str, Any]) -> list[Turn]:
    return list(body["contents"])


def gemini_call(text: str, call_id: str, name: str, args: dict[str, Any]) -> Turn:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    call = {"id": call_id, "name": name, "args": args}
    parts.append({"functionCall": call, "thoughtSignature": SIGNATURE})
    return {"role": "model", "parts": parts}


def gemini_result(call_id: str, name: str, content: str, error: bool) -> Turn:
    value = json.loads(content)
    response = value if isinstance(value, dict) else {"output": value}
    return {
        "role": "user",
        "parts": [{"functionResponse": {"id": call_id, "name": name, "response": response}}],
    }


def gemini_problem(body: dict[str, Any]) -> str | None:
    previous: list[Any] = []
    for c in body["contents"]:
        parts = c.get("parts") or []
        calls = [p for p in parts if "functionCall" in p]
        if calls and "thoughtSignature" not in calls[0]:
            return "Function call is missing a thought_signature in functionCall parts"
        named = {p["functionCall"]["name"] for p in previous if "functionCall" in p}
        answers = [p["functionResponse"]["name"] for p in parts if "functionResponse" in p]
        if answers and (c["role"] != "user" or not set(answers) <= named):
            return "function response parts must answer the function calls of the turn before"
        previous = parts
    return None


def _text_turn(role: str, key: str) -> Callable[[str], Turn]:
    if key == "parts":
        return lambda text: {"role": role, "parts": [{"text": text}]}
    return lambda text: {"role": role, "content": text}


@dataclass(frozen=True)
class Dialect:
    provider: str
    model: str
    path_suffix: str
    settings: Callable[[str], dict[str, Any]]  # wire server url -> settings overrides
    tool_call: Callable[[str, str, dict[str, Any], str], Transcript]
    text: Callable[[list[str]], Transcript]
    turns: Callable[[dict[str, Any]], list[Turn]]  # the conversation, without system text
    user: Callable[[str], Turn]
    assistant: Callable[[str], Turn]
    call: Callable[[str, str, str, dict[str, Any]], Turn]
    result: Callable[[str, str, str, bool], Turn]
    problem: Callable[[dict[str, Any]], str | None]  # what the real API would refuse
    refusal: Callable[[str], bytes]  # its 400 body


DIALECTS = [
    Dialect(
        "openai",
        "gpt-4.1-mini",
        "/v1/chat/completions",
        lambda url: {"openai_base_url": f"{url}/v1", "openai_api_key": "sk-test"},
        openai_tool_call,
        openai_text,
        openai_turns,
        _text_turn("user", "content"),
        _text_turn("assistant", "content"),
        openai_call,
        openai_result,
        openai_problem,
        lambda m: json.dumps({"error": {"message": m, "type": "invalid_request_error"}}).encode(),
    ),
    Dialect(
        "anthropic",
        "claude-haiku-4-5",
        "/v1/messages",
        lambda url: {"anthropic_base_url": url, "anthropic_api_key": "sk-ant-test"},
        anthropic_tool_call,
        anthropic_text,
        anthropic_turns,
        _text_turn("user", "content"),
        _text_turn("assistant", "content"),
        anthropic_call,
        anthropic_result,
        anthropic_problem,
        lambda m: json.dumps(
            {"type": "error", "error": {"type": "invalid_request_error", "message": m}}
        ).encode(),
    ),
    Dialect(
        "gemini",
        "gemini-2.5-flash",
        ":streamGenerateContent",
        lambda url: {"gemini_base_url": url, "gemini_api_key": "AIza-test"},
        gemini_tool_call,
        gemini_text,
        gemini_turns,
        _text_turn("user", "parts"),
        _text_turn("model", "parts"),
        gemini_call,
        gemini_result,
        gemini_problem,
        lambda m: json.dumps(
            {"error": {"code": 400, "message": m, "status": "INVALID_ARGUMENT"}}
        ).encode(),
    ),
]


def answering(dialect: Dialect, *replies: Transcript) -> Callable[[Recorded], Reply]:
    """Serve the replies in order; refuse a request the real API would refuse (a 400)."""
    served = itertools.count()

    def respond(request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.endswith(dialect.path_suffix):
            return Reply(Transcript(404, "Not Found", JSON, b"{}"))
        problem = dialect.problem(request.json)
        if problem is not None:
            return Reply(Transcript(400, "Bad Request", JSON, dialect.refusal(problem)))
        return Reply(replies[min(next(served), len(replies) - 1)])

    return respond


def compact(types: list[str]) -> list[str]:
    """Event types with each run of `token` events as one."""
    return [t for i, t in enumerate(types) if t != "token" or types[i - 1 : i] != ["token"]]


def body(dialect: Dialect, message: str, tools: list[str], **extra: Any) -> dict[str, Any]:
    options = {"provider": dialect.provider, "model": dialect.model, "tools": tools}
    return {"message": message, "options": options, **extra}


def only(result: StreamResult, kind: str) -> dict[str, Any]:
    [event] = [e.json for e in result.events if e.type == kind]
    return event


async def session_messages(base_url: str, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get(f"/api/sessions/{session_id}")
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


ARGS = {"expression": "12*7"}
RESULT = {"expression": "12*7", "result": 84}
QUESTION, FOLLOW_UP = "What is 12 times 7?", "And doubled?"
ANSWER, SECOND_ANSWER = ["12 × 7 ", "= 84."], ["Doubled, ", "that is 168."]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.provider)
async def test_tool_round_trip_and_replay_in_the_providers_own_format(
    live_server: Any, dialect: Dialect
) -> None:
    replies = (
        dialect.tool_call("call_k3Vq8sLm2Rw9", "calculate", ARGS, ""),
        dialect.text(ANSWER),
        dialect.text(SECOND_ANSWER),
    )
    async with (
        WireServer(answering(dialect, *replies)) as upstream,
        live_server(
            provider=dialect.provider, provider_max_retries=0, **dialect.settings(upstream.url)
        ) as srv,
    ):
        first = await chat_stream(srv.url, body(dialect, QUESTION, ["calculate"]))
        session_id = first.events[0].json["session_id"]
        stored = await session_messages(srv.url, session_id)
        second = await chat_stream(
            srv.url, body(dialect, FOLLOW_UP, ["calculate"], session_id=session_id)
        )

    assert compact(first.types) == ["metadata", "tool_call", "tool_result", "token", "done"], (
        first.raw
    )
    call = only(first, "tool_call")
    call_id = call["call_id"]
    assert (call["tool"], call["args"]) == ("calculate", ARGS)
    tool_result = only(first, "tool_result")
    assert tool_result["call_id"] == call_id and tool_result["error"] is None
    assert tool_result["result"]["result"] == 84
    assert first.text == "".join(ANSWER)
    assert first.last()["finish_reason"] == "stop"
    assert first.last()["usage"]["completion_tokens"] > 0

    # the loop's second request carries the call and its result in this provider's format
    assert len(upstream.requests) == 3
    asked, answered, replayed = (dialect.turns(r.json) for r in upstream.requests)
    content = json.dumps(RESULT, ensure_ascii=False)
    exchange = [
        dialect.user(QUESTION),
        dialect.call("", call_id, "calculate", ARGS),
        dialect.result(call_id, "calculate", content, False),
    ]
    assert asked == exchange[:1]
    assert answered == exchange
    # tools are offered again in the round after the tool ran
    assert "calculate" in json.dumps(upstream.requests[1].json.get("tools"))

    # the session stores the round in model order
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1]["metadata"]["tool_calls"] == [
        {"id": call_id, "name": "calculate", "arguments": ARGS}
    ]
    assert stored[2]["metadata"]["call_id"] == call_id
    assert stored[2]["metadata"]["error"] is False
    assert json.loads(stored[2]["content"]) == RESULT
    assert stored[3]["content"] == "".join(ANSWER)

    # the next user turn replays the whole exchange from the history
    assert compact(second.types) == ["metadata", "token", "done"], second.raw
    assert second.text == "".join(SECOND_ANSWER)
    assert replayed == [
        *exchange,
        dialect.assistant("".join(ANSWER)),
        dialect.user(FOLLOW_UP),
    ]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.provider)
async def test_a_tool_that_raises_goes_back_to_the_model_as_an_error_result(
    live_server: Any, dialect: Dialect
) -> None:
    preface = "Let me try that."
    args = {"reason": "disk on fire"}
    replies = (
        dialect.tool_call("call_Bm7pQ2xZ0", "boom", args, preface),
        dialect.text(["It failed: ", "the disk is on fire."]),
        dialect.text(["Still broken."]),
    )
    async with (
        WireServer(answering(dialect, *replies)) as upstream,
        live_server(
            provider=dialect.provider,
            provider_max_retries=0,
            tool_modules=SAMPLES,
            **dialect.settings(upstream.url),
        ) as srv,
    ):
        first = await chat_stream(srv.url, body(dialect, "Run boom", ["boom"]))
        session_id = first.events[0].json["session_id"]
        stored = await session_messages(srv.url, session_id)
        second = await chat_stream(
            srv.url, body(dialect, "Try again?", ["boom"], session_id=session_id)
        )

    assert compact(first.types) == [
        "metadata",
        "token",
        "tool_call",
        "tool_result",
        "token",
        "done",
    ], first.raw
    call_id = only(first, "tool_call")["call_id"]
    tool_result = only(first, "tool_result")
    error = "boom failed: RuntimeError: disk on fire"
    assert tool_result["result"] is None and tool_result["error"] == error
    assert first.text == preface + "It failed: the disk is on fire."
    assert first.last()["finish_reason"] == "stop"
    assert stored[2]["metadata"]["error"] is True

    content = json.dumps({"error": error}, ensure_ascii=False)
    exchange = [
        dialect.user("Run boom"),
        dialect.call(preface, call_id, "boom", args),
        dialect.result(call_id, "boom", content, True),
    ]
    assert len(upstream.requests) == 3
    assert dialect.turns(upstream.requests[1].json) == exchange
    assert second.types[-1] == "done", second.raw
    assert dialect.turns(upstream.requests[2].json) == [
        *exchange,
        dialect.assistant("It failed: the disk is on fire."),
        dialect.user("Try again?"),
    ]


def test_regression_tool_error_reached_anthropic_without_is_error() -> None:
    """A failed tool call went back to Claude as a plain `tool_result`, so the model was told
    the call succeeded with an odd result; it must carry `is_error: true` (live and replayed)."""
    call = ToolCall("toolu_01", "boom", {})
    failed = json.dumps({"error": "boom failed: RuntimeError: kaboom"})
    _, messages = to_anthropic_messages(
        (
            ChatMessage("user", "Run both"),
            ChatMessage("assistant", "", tool_calls=(call, ToolCall("toolu_02", "calc", {}))),
            ChatMessage("tool", failed, tool_call_id="toolu_01"),
            ChatMessage("tool", '{"error": 3, "result": 1}', tool_call_id="toolu_02"),
        )
    )
    first, second = messages[-1]["content"]
    assert first["is_error"] is True
    assert "is_error" not in second  # a result that merely has an "error" key is not a failure
