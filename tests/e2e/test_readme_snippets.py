"""The README's browser snippet, run as written in Debian's chromium against a real server:
it shows the answer and closes its EventSource on `done`, so the browser does not ask again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.e2e.server_process import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_js() -> str:
    blocks = re.findall(r"```js\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README has one browser snippet; this test runs it"
    return str(blocks[0])


def test_the_readme_eventsource_snippet_shows_the_answer_and_closes_on_done(
    page: Any, web_server: ServerProcess
) -> None:
    page.goto(web_server.url + "/")
    # what the snippet assumes around it: the question `q` and an element `out`
    script = (
        "() => new Promise((resolve) => {"
        " const q = 'hello from the README';"
        " const out = document.createElement('div');"
        " const OriginalEventSource = window.EventSource;"
        " let source;"
        " window.EventSource = function (url) { source = new OriginalEventSource(url);"
        "   source.addEventListener('done', () => setTimeout(() =>"
        "     resolve({text: out.textContent, state: source.readyState}), 0));"
        "   return source; };" + readme_js() + " window.EventSource = OriginalEventSource; })"
    )
    result = page.evaluate(script)
    assert "hello from the README" in result["text"]  # the scripted answer repeats the question
    assert result["state"] == 2  # CLOSED: the snippet closed it on `done`
