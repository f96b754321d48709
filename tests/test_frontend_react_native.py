"""docs/frontend.md's React Native snippet (examples/native-js/react-native.js, with
react-native-sse 1.2.1 from tests/js) bundled with esbuild and run under Node against a real
`tokenrelay serve` on the bundled local model, with an XMLHttpRequest that streams as React
Native's does (tests/js/rn_xhr.mjs): the answer arrives piece by piece, the snippet closes
its EventSource on the terminal event, Stop ends the answer with CANCELLED, and a refused
request gives its status and code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doc_blocks import ROOT, files
from tests.node import JS_DIR, require_node, run_node
from tests.processes import ServerProcess, serve
from tests.security.conftest import ALICE_KEY, KEYS

DOC = ROOT / "docs" / "frontend.md"
SNIPPET = "examples/native-js/react-native.js"

DRIVER = """
import { XMLHttpRequest } from '%(xhr)s';
import { streamAnswer } from './react-native.js';

globalThis.XMLHttpRequest = XMLHttpRequest; // React Native's global
const ask = (message, stopAfter) => new Promise((resolve) => {
  const texts = [];
  let stopped = null;
  const handle = streamAnswer(message, {
    onText: (text) => {
      texts.push(text);
      if (texts.length === stopAfter) stopped = handle.stop();
    },
    onDone: (event) => resolve({ texts, end: event }),
    onError: (event) => resolve({ texts, end: event }),
  });
}).then(async (result) => ({ ...result, requests: XMLHttpRequest.requests.splice(0) }));

const out = {};
out.answer = await ask('경복궁은 어디에 있나요?', 0);
out.stopped = await ask('Write a long story about a brave knight and a dragon.', 3);
out.refused = await ask('', 0);
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("rn-server")
    env = {"TOKENRELAY_LOCAL_WEIGHTS": "original", "TOKENRELAY_LOCAL_N_THREADS": "1"}
    with serve(data, "rn", args=["--provider", "local"], env=env, api_keys=KEYS) as process:
        yield process


def test_the_react_native_snippet_streams_stops_and_reports_a_refusal(
    tmp_path: Path, server: ServerProcess
) -> None:
    require_node()
    code = files(DOC)[SNIPPET]
    assert code == (ROOT / SNIPPET).read_text()
    code = code.replace("'http://10.0.2.2:8000'", repr(server.url))
    code = code.replace("'your-api-key'", repr(ALICE_KEY))
    (tmp_path / "react-native.js").write_text(code)
    (tmp_path / "driver.mjs").write_text(DRIVER % {"xhr": JS_DIR / "rn_xhr.mjs"})
    bundle = tmp_path / "bundle.mjs"
    run_node("build_bundle.mjs", str(tmp_path / "driver.mjs"), str(bundle), "node")
    seen: dict[str, Any] = run_node(str(bundle), timeout=300)

    answer = seen["answer"]
    assert answer["end"]["type"] == "done"
    assert len(answer["texts"]) > 1  # piece by piece, not all at the end
    assert answer["texts"][-1].strip()
    (request,) = answer["requests"]  # one request: closed on `done`, never asked again
    assert "event_names=false" in request["url"] and request["aborted"]
    assert request["headers"]["Authorization"] == f"Bearer {ALICE_KEY}"

    stopped = seen["stopped"]
    assert stopped["end"]["type"] == "error" and stopped["end"]["code"] == "CANCELLED"
    assert len(stopped["texts"]) >= 3

    refused = seen["refused"]
    assert refused["end"]["status"] == 422
    assert refused["end"]["code"] == "VALIDATION_ERROR"
    assert [r["aborted"] for r in refused["requests"]] == [True]
