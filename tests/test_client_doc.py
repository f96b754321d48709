"""docs/client.md's OpenAI snippets, run as written (the `openai` SDK, and the Agents SDK on
its async client) against a real server, with the scripted provider in place of `local`."""

from __future__ import annotations

import asyncio
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "client.md"


def snippets(section: str) -> list[str]:
    text = DOC.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


class _Scripted(httpx.BaseTransport):
    """Adds the scripted provider's options to each request body (what `extra_body` does)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._inner = httpx.HTTPTransport()
        self._options = options

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._options and request.content:
            body = json.loads(request.content)
            body["tokenrelay"] = {"scripted": self._options}
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, json=body)
        return self._inner.handle_request(request)


class _AsyncScripted(httpx.AsyncBaseTransport):
    """`_Scripted` for the async client."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._options = options

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._options and request.content:
            body = json.loads(request.content)
            body["tokenrelay"] = {"scripted": self._options}
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, json=body)
        return await self._inner.handle_async_request(request)


async def run(snippet: str, url: str, options: dict[str, Any], monkeypatch: Any) -> None:
    code = snippet.replace("http://127.0.0.1:8000", url).replace('"local"', '"scripted"')
    client = httpx.Client(transport=_Scripted(options))
    monkeypatch.setattr(openai, "OpenAI", partial(openai.OpenAI, http_client=client))
    # the async client's connections belong to the snippet's own event loop (asyncio.run)
    async_client = partial(httpx.AsyncClient, transport=_AsyncScripted(options))
    monkeypatch.setattr(
        openai, "AsyncOpenAI", lambda **kw: _async_openai(http_client=async_client(), **kw)
    )
    await asyncio.to_thread(exec, compile(code, str(DOC), "exec"), {})


_async_openai = openai.AsyncOpenAI


async def test_chat_completions_snippet(live_server, monkeypatch, capsys) -> None:
    (snippet,) = snippets("OpenAI-compatible API")
    async with live_server() as srv:
        await run(snippet, srv.url, {"reply": "Busan is a port.\n\nMore."}, monkeypatch)
    out = capsys.readouterr().out
    assert out.startswith("Busan is a port.\n") and "More" not in out  # cut at the stop
    assert "completion_tokens" in out


@pytest.mark.parametrize("which", [0, 1])
async def test_responses_snippets(live_server, monkeypatch, capsys, which: int) -> None:
    snippet = snippets("The Responses API")[which]
    tool = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Seoul"}}]}
    async with live_server() as srv:
        await run(snippet, srv.url, tool if which else {}, monkeypatch)
    out = capsys.readouterr().out
    if which == 0:
        assert "scripted answer to: Where is Gyeongbokgung?" in out
        assert "scripted answer to: And how old is it?" in out
        assert out.strip().endswith("completed")
    else:
        assert "scripted answer to: Weather in Seoul?" in out


async def test_agents_sdk_snippet(live_server, monkeypatch, capsys) -> None:
    (snippet,) = snippets("The OpenAI Agents SDK (Python)")
    tool = {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Seoul"}}],
        "reply": "It is sunny in Seoul.",
    }
    async with live_server() as srv:
        await run(snippet, srv.url, tool, monkeypatch)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
        "It is sunny in Seoul.",
    ]
