"""docs/frontend.md's native-protocol snippets, run as written in Debian's chromium against a
real `tokenrelay serve`: the `EventSource` functions (closed on the terminal event), `fetch`
POST streaming through `streamChat` with a resume after the connection is really cut (a TCP
proxy drops it), the error branching, and the React hook's component built with esbuild and
served from another origin (CORS): Korean streams, tool progress and sources show, Stop stops
the server's stream, a reload mid-answer resumes it whole, a refused request shows its
message."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import free_port
from tests.doc_blocks import ROOT, snippets
from tests.e2e.conftest import watched_page
from tests.e2e.server_process import ServerProcess, tokenrelay_serve
from tests.e2e.test_react_chat import _static
from tests.node import run_node
from tests.tcp_proxy import TcpProxy

DOC = ROOT / "docs" / "frontend.md"
EXAMPLE = ROOT / "examples" / "native-js"

# the test's entry: the example files, the doc's `errors` block, and the component on #root
ENTRY = """
import { createRoot } from 'react-dom/client';
import { NativeChat } from './NativeChat.jsx';
import * as stream from './tokenrelay-stream.js';
import { applyEvent } from './useTokenrelayChat.js';
import { askOrExplain } from './errors.js';

window.tn = { ...stream, applyEvent, askOrExplain };
const params = new URL(location.href).searchParams;
const root = document.getElementById('root');
if (root) {
  const options = JSON.parse(params.get('options') || '{}');
  createRoot(root).render(<NativeChat base={params.get('server')} options={options} />);
}
"""
PAGE = '<!doctype html><html><head><meta charset="utf-8"></head><body><div id="root"></div>'
PAGE += '<script src="/main.js"></script></body></html>'


class ThreadedProxy:
    """tests/tcp_proxy.py's proxy on a loop of its own, for a sync (Playwright) test."""

    def __init__(self, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy("127.0.0.1", target_port)
        self._run(self.proxy.start())
        self.url = f"http://127.0.0.1:{self.proxy.port}"

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def drop_connections(self) -> None:
        self._run(self.proxy.cut())
        self._run(self.proxy.restore())

    def close(self) -> None:
        self._run(self.proxy.cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example files and the doc's `errors` block, bundled for the browser."""
    src = tmp_path_factory.mktemp("native-js-src")
    for path in EXAMPLE.iterdir():
        shutil.copyfile(path.resolve(), src / path.name)  # sse.js: the chat page's own file
    (src / "errors.js").write_text(snippets(DOC)["errors"])
    (src / "entry.jsx").write_text(ENTRY)
    out = tmp_path_factory.mktemp("native-js-out")
    run_node("build_bundle.mjs", str(src / "entry.jsx"), str(out / "main.js"), "browser")
    (out / "index.html").write_text(PAGE)
    return out


@pytest.fixture(scope="module")
def site(
    bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ServerProcess]]:
    """(the bundle's origin, the tokenrelay it talks to across origins)."""
    port = free_port()
    env = {
        "TOKENRELAY_CORS_ORIGINS": f"http://127.0.0.1:{port}",
        "TOKENRELAY_DISCONNECT_GRACE_S": "30",  # a dropped connection must find it running
        "TOKENRELAY_TOOL_MODULES": json.dumps(["tests.tools.sample_tools"]),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    data = tmp_path_factory.mktemp("native-js-server")
    with _static(bundle, port) as origin, tokenrelay_serve(data, env=env) as server:
        yield origin, server


@pytest.fixture
def tab(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its script errors fail the test. Unlike conftest's `page`, a refused
    request's console line ("Failed to load resource: … 422") is expected here."""
    yield from watched_page(
        browser, request, width=900, height=600, expected=lambda t: "Failed to load resource" in t
    )


def _on_server(tab: Any, url: str, bundle: Path) -> None:
    """Open tokenrelay's own page (same origin: relative URLs reach the server) with the
    snippets loaded."""
    tab.goto(url + "/")
    tab.add_script_tag(content=(bundle / "main.js").read_text())


# -- EventSource


def _run_eventsource(tab: Any, function: str, question: str) -> dict[str, Any]:
    script = (
        "async ([question]) => {"
        " const out = document.createElement('div');"
        " const Original = window.EventSource; const sources = [];"
        " window.EventSource = function (url) { const s = new Original(url); sources.push(s);"
        "   return s; };"
        " window.EventSource.CLOSED = Original.CLOSED;"
        + snippets(DOC)["eventsource"]
        + f" let end; try {{ end = await {function}(question, out); }}"
        " catch (e) { end = e instanceof Error ? {refused: e.message} : e; }"
        " window.EventSource = Original;"
        " return {text: out.textContent, end, states: sources.map(s => s.readyState)}; }"
    )
    result: dict[str, Any] = tab.evaluate(script, [question])
    return result


@pytest.mark.parametrize("function", ["ask", "askOnMessage"])
def test_the_eventsource_snippets_show_the_answer_and_close_on_done(
    tab: Any, site: tuple[str, ServerProcess], bundle: Path, function: str
) -> None:
    _, server = site
    _on_server(tab, server.url, bundle)
    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url) if "/api/chat/stream" in r.url else None)
    result = _run_eventsource(tab, function, "경복궁은 어디에 있나요?")
    assert "경복궁은 어디에 있나요?" in result["text"]  # the scripted answer repeats it
    assert result["end"]["type"] == "done"
    assert result["states"] == [2]  # one EventSource, CLOSED by the snippet on `done`
    assert len(requests) == 1  # and it never asked again


@pytest.mark.parametrize("function", ["ask", "askOnMessage"])
def test_the_eventsource_snippets_reject_a_refused_request(
    tab: Any, site: tuple[str, ServerProcess], bundle: Path, function: str
) -> None:
    _, server = site
    _on_server(tab, server.url, bundle)
    result = _run_eventsource(tab, function, "")  # an empty message: 422 VALIDATION_ERROR
    assert result["end"] == {"refused": "tokenrelay refused the request"}
    assert result["states"] == [2]


# -- fetch: streamChat, resume, errors


def test_stream_chat_resumes_a_cut_connection_with_nothing_lost_or_repeated(
    tab: Any, site: tuple[str, ServerProcess], bundle: Path
) -> None:
    _, server = site
    port = int(server.url.rsplit(":", 1)[1])
    proxy = ThreadedProxy(port)
    try:
        _on_server(tab, proxy.url, bundle)
        resumes: list[dict[str, str]] = []
        tab.on(
            "request",
            lambda r: resumes.append(r.headers) if "/api/streams/" in r.url else None,
        )
        reply = " ".join(f"낱말{i}" for i in range(40))
        tab.evaluate(
            "(reply) => { window.seen = [];"
            " tn.streamChat({ body: { message: '긴 답', options: { scripted:"
            "   { reply, delay_ms: 40 } } },"
            "   onEvent: (event, id) => seen.push([event.type, event.content ?? '', id]) })"
            " .then(end => { window.end = end; }, e => { window.failure = String(e); }); }",
            reply,
        )
        tab.wait_for_function("() => seen.filter(e => e[0] === 'token').length >= 5")
        proxy.drop_connections()
        tab.wait_for_function("() => window.end || window.failure", timeout=60_000)
        seen = tab.evaluate("seen")
        end = tab.evaluate("window.end ?? window.failure")
    finally:
        proxy.close()
    assert end["type"] == "done"
    assert "".join(content for kind, content, _ in seen if kind == "token") == reply
    ids = [event_id for _, _, event_id in seen]
    stream_id = ids[0].split(":")[0]
    assert ids == [f"{stream_id}:{n}" for n in range(1, len(ids) + 1)]  # no gap, no repeat
    assert resumes, "streamChat did not resume"
    assert resumes[0]["last-event-id"].startswith(f"{stream_id}:")


def test_the_errors_snippet_branches_on_the_status_of_a_refused_stream(
    tab: Any, site: tuple[str, ServerProcess], bundle: Path
) -> None:
    _, server = site
    _on_server(tab, server.url, bundle)
    ask = "([options]) => tn.askOrExplain('안녕하세요', options, () => {})"
    limited = tab.evaluate(
        ask, [{"scripted": {"error_after": 0, "error_code": "PROVIDER_RATE_LIMIT"}}]
    )
    assert limited["retryInS"] > 0 and limited["notice"]  # 429: retryable, with Retry-After
    invalid = tab.evaluate(ask, [{"no_such_option": True}])
    assert invalid["code"] == "VALIDATION_ERROR" and "retryInS" not in invalid
    answered = tab.evaluate(ask, [{"scripted": {"reply": "네, 안녕하세요."}}])
    assert answered["end"]["type"] == "done"


def test_apply_event_folds_tool_events_into_one_call(
    tab: Any, site: tuple[str, ServerProcess], bundle: Path
) -> None:
    _, server = site
    _on_server(tab, server.url, bundle)
    state = tab.evaluate(
        "() => [{type: 'tool_call', call_id: 'c1', tool: 'weather', args: {city: '서울'}},"
        " {type: 'tool_progress', call_id: 'c1', tool: 'weather', message: '서울 날씨 조회 중'},"
        " {type: 'tool_result', call_id: 'c1', tool: 'weather', result: {temp: 3}},"
        " {type: 'token', content: '영상 3도', index: 0}]"
        " .reduce(tn.applyEvent, {status: 'streaming', text: '', tools: [], sources: []})"
    )
    assert state["text"] == "영상 3도"
    assert state["tools"] == [
        {
            "callId": "c1",
            "tool": "weather",
            "args": {"city": "서울"},
            "message": "서울 날씨 조회 중",
            "result": {"temp": 3},
            "error": None,  # undefined in the page
        }
    ]


# -- the React hook, in its component, from another origin


def _chat_url(site: tuple[str, ServerProcess], options: dict[str, Any]) -> str:
    origin, server = site
    return f"{origin}/?server={quote(server.url)}&options={quote(json.dumps(options))}"


def _send(tab: Any, text: str) -> None:
    tab.fill("input[name=q]", text)
    tab.press("input[name=q]", "Enter")


def test_the_hook_streams_korean_with_tool_progress_and_sources(
    tab: Any, site: tuple[str, ServerProcess]
) -> None:
    _, server = site
    loaded = httpx.post(
        f"{server.url}/api/documents",
        json={"title": "서울의 궁궐", "text": "경복궁은 서울 종로구에 있는 조선의 법궁이다."},
        timeout=30,
    )
    assert loaded.status_code in (200, 201), loaded.text
    calls = [{"name": "steps", "arguments": {"count": 2}}]
    reply = "경복궁은 서울 종로구에 있습니다."
    tab.goto(_chat_url(site, {"rag": True, "scripted": {"tool_calls": calls, "reply": reply}}))
    _send(tab, "경복궁은 어디에 있나요?")
    tab.wait_for_selector("[data-status=done]")
    assert tab.text_content(".answer") == reply
    assert tab.locator(".tool").all_text_contents() == ["steps: done"]
    assert "서울의 궁궐" in tab.locator("cite").all_text_contents()


def test_the_hook_stops_the_answer_on_the_server(tab: Any, site: tuple[str, ServerProcess]) -> None:
    _, server = site
    tab.goto(_chat_url(site, {"scripted": {"reply": "하나 둘 셋 넷", "stall_after": 2}}))
    _send(tab, "멈춰 주세요")
    tab.wait_for_function("() => document.querySelector('.answer').textContent.length > 0")
    tab.get_by_role("button", name="Stop").click()
    tab.wait_for_selector("[data-status=stopped]")
    assert tab.text_content(".answer") == "하나 둘 "
    stream_id = tab.evaluate("sessionStorage.getItem('tokenrelay-stream')")
    # the server's stream ended with CANCELLED: it was stopped, not just no longer read
    replay = httpx.get(f"{server.url}/api/streams/{stream_id}", timeout=30)
    last = [line for line in replay.text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[len("data: ") :])["code"] == "CANCELLED"


def test_the_hook_resumes_after_a_reload_with_the_whole_answer(
    tab: Any, site: tuple[str, ServerProcess]
) -> None:
    reply = " ".join(f"낱말{i}" for i in range(40))
    tab.goto(_chat_url(site, {"scripted": {"reply": reply, "delay_ms": 50}}))
    _send(tab, "긴 답을 주세요")
    tab.wait_for_function(
        "() => document.querySelector('.answer').textContent.split(' ').length > 5"
    )
    tab.reload()
    tab.wait_for_selector("[data-status=done]")
    assert tab.text_content(".answer") == reply  # replayed from its start, then live


def test_the_hook_shows_a_refused_request_and_offers_a_retry_when_retryable(
    tab: Any, site: tuple[str, ServerProcess]
) -> None:
    tab.goto(_chat_url(site, {"no_such_option": 1}))
    _send(tab, "안녕")
    tab.wait_for_selector("[data-status=error]")
    assert tab.get_attribute("[role=alert]", "data-code") == "VALIDATION_ERROR"
    assert tab.get_by_role("button", name="Retry").count() == 0
    failing = {"scripted": {"error_after": 0, "error_code": "PROVIDER_UNAVAILABLE"}}
    tab.goto(_chat_url(site, failing))
    _send(tab, "안녕")
    tab.wait_for_selector("[data-status=error]")
    assert tab.get_attribute("[role=alert]", "data-code") == "PROVIDER_UNAVAILABLE"
    assert tab.get_by_role("button", name="Retry").count() == 1


def test_the_parser_is_served_for_reuse_at_static_sse_js(
    tab: Any, site: tuple[str, ServerProcess]
) -> None:
    _, server = site
    served = httpx.get(f"{server.url}/static/sse.js", timeout=30)
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.text == (ROOT / "src" / "tokenrelay" / "web" / "sse.js").read_text()
    tab.goto(server.url + "/")
    events = tab.evaluate(
        "async () => { const { SSEParser } = await import('/static/sse.js');"
        " const seen = []; const parser = new SSEParser(e => seen.push(e));"
        ' const frame = \'id: s:1\\r\\ndata: {"content":"경복궁"}\\r\\n\\r\\n\';'
        " const bytes = new TextEncoder().encode(frame);"
        " for (const byte of bytes) parser.feed(new Uint8Array([byte]));"  # split everywhere
        " return seen; }"
    )
    assert events == [{"type": "message", "data": '{"content":"경복궁"}', "id": "s:1"}]
