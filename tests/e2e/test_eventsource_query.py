"""An `EventSource` in Debian's chromium, talking to `GET /api/chat/stream` in the query form
(docs/protocol.md, "The query form"): camelCase parameters, a session named by an earlier
turn, options as parameters, and an unknown parameter refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server_process import ServerProcess

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def protocol_js() -> str:
    blocks = re.findall(r"```js\n(.*?)```", PROTOCOL.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if "URLSearchParams" in b]
    assert len(found) == 1, "protocol.md has one query-form snippet; this test runs it"
    return str(found[0])


# wraps EventSource to see what the snippet opens and hears, and resolves on `done`
# (or on a failed connection, with readyState CLOSED)
WATCH = """
  const seen = { url: null, metadata: null, done: null, tools: [], failed: false };
  const OriginalEventSource = window.EventSource;
  window.EventSource = function (url) {
    const source = new OriginalEventSource(url);
    seen.url = url;
    source.addEventListener('metadata', (e) => { seen.metadata = JSON.parse(e.data); });
    source.addEventListener('tool_result', (e) => { seen.tools.push(JSON.parse(e.data)); });
    source.addEventListener('done', (e) => {
      seen.done = JSON.parse(e.data);
      setTimeout(() => resolve({ ...seen, text: out.textContent, state: source.readyState }), 0);
    });
    source.onerror = () => {
      if (source.readyState === 2) resolve({ ...seen, failed: true, state: 2 });
    };
    return source;
  };
"""


def run_in_page(page: Any, server: ServerProcess, body: str, **values: str) -> dict[str, Any]:
    page.goto(server.url + "/")
    names = ", ".join(values)
    script = (
        f"({{ {names} }}) => new Promise((resolve) => {{"
        " const out = document.createElement('div');" + WATCH + body + " })"
    )
    result: dict[str, Any] = page.evaluate(script, values)
    return result


def first_turn(server: ServerProcess) -> str:
    response = httpx.post(f"{server.url}/api/chat", json={"message": "first turn"}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["session_id"])


def test_the_protocol_snippet_continues_a_session_over_eventsource(
    page: Any, web_server: ServerProcess
) -> None:
    session_id = first_turn(web_server)
    q = "부산 해운대는 어때요?"
    result = run_in_page(page, web_server, protocol_js(), q=q, sessionId=session_id)
    assert not result["failed"], result
    assert f"sessionId={session_id}" in result["url"] and "enableTools=false" in result["url"]
    assert result["metadata"]["session_id"] == session_id  # the session it named
    assert result["done"]["session_id"] == session_id
    assert result["done"]["history_length"] == 4  # the first turn and this one
    assert q in result["text"]  # the scripted answer repeats the question
    assert result["state"] == 2  # closed on done
    history = httpx.get(f"{web_server.url}/api/sessions/{session_id}", timeout=30).json()
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == [
        "first turn",
        q,
    ]


OPEN = """
  const params = new URLSearchParams(query);
  new EventSource('/api/chat/stream?' + params);
"""


def test_enable_tools_false_and_options_as_json_over_eventsource(
    page: Any, web_server: ServerProcess
) -> None:
    session_id = first_turn(web_server)
    scripted = '{"toolCalls":[{"name":"calculate","arguments":{"expression":"6*7"}}],"reply":"42"}'
    query = f"message=6x7&sessionId={session_id}&enableTools=false&scripted={scripted}"
    result = run_in_page(page, web_server, OPEN, query=query)
    assert not result["failed"], result
    # the model asked for the tool; with tools off nothing ran it, and the turn ended there
    assert result["tools"] == [] and result["done"]["finish_reason"] == "tool_calls"
    assert result["metadata"]["session_id"] == session_id


def test_an_unknown_parameter_closes_the_eventsource(
    browser: Any, web_server: ServerProcess
) -> None:
    # its own page: the `page` fixture fails a test on the 422 the console reports
    context = browser.new_context()
    try:
        result = run_in_page(context.new_page(), web_server, OPEN, query="message=hi&history=1")
    finally:
        context.close()
    assert result["failed"] and result["state"] == 2 and result["metadata"] is None
    response = httpx.get(
        f"{web_server.url}/api/chat/stream", params={"message": "hi", "history": "1"}, timeout=30
    )
    assert response.status_code == 422
    assert response.json()["message"] == "unknown query parameter 'history'"
