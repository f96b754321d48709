"""docs/frontend.md's transport block, run as written with node against a real server with
API keys: it loads a chat, the AI SDK sends through it, its Stop stops the server, and it
starts a plan whose stream the AI SDK reads through `planTransport`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.doc_blocks import ROOT, fenced_blocks, files, snippets
from tests.node import JS_DIR, require_node, run_node
from tests.processes import serve
from tests.security.conftest import ALICE_KEY, KEYS

DOC = Path(__file__).resolve().parent.parent / "docs" / "frontend.md"

DRIVER = """
import { readUIMessageStream } from 'ai';

const user = text => ({ id: 'u1', role: 'user', parts: [{ type: 'text', text }] });
const send = (chatId, text, scripted) =>
  transport.sendMessages({
    chatId, messages: [user(text)], trigger: 'submit-message', messageId: undefined,
    body: { options: { scripted } },
  });
async function last(stream) {
  let message;
  for await (message of readUIMessageStream({ stream })) {}
  return message;
}
const out = { before: await loadMessages('doc-chat') };
const hello = { reply: 'Hello from the docs', tokens: 3 };
const answer = await last(await send('doc-chat', 'hi', hello));
out.answer = answer.parts.filter(p => p.type === 'text').map(p => p.text).join('');
out.after = (await loadMessages('doc-chat')).map(m => m.role);
const running = await send('doc-stop', 'x', { reply: 'a b c d', tokens: 4, stall_after: 1 });
const types = [];
const reader = running.getReader();
for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  types.push(value.type);
  if (value.type === 'text-delta' && !types.includes('stopped')) {
    types.push('stopped');
    await stopAnswer('doc-stop');
  }
}
out.types = types;
const plan = {
  title: 'Paris',
  days: [{ day: 1, date: '2030-06-01', title: 'Day 1', activities: [
    { time: '09:00', name: 'Louvre', description: 'Museum', estimated_cost: 20 },
  ] }],
  total_estimated_cost: 20, currency: 'EUR', notes: '',
};
const streamId = await startPlan({
  location: 'Paris', start_date: '2030-06-01', end_date: '2030-06-01', currency: 'EUR',
  options: { scripted: { replies: [JSON.stringify(plan)], tokens: 3, delay_ms: 20 } },
});
const planned = await last(await planTransport.reconnectToStream({ chatId: streamId }));
out.plan = {
  streamId,
  metadataStreamId: planned.metadata.streamId,
  data: Object.fromEntries(
    planned.parts.filter(p => p.type.startsWith('data-')).map(p => [p.type, p.data]),
  ),
  text: planned.parts.filter(p => p.type === 'text').map(p => p.text).join(''),
};
try {
  await startPlan({ location: 'Paris', start_date: '2030-06-02', end_date: '2030-06-01' });
} catch (error) {
  out.refused = String(error.message);
}
console.log(JSON.stringify(out));
"""


def transport_block() -> str:
    return snippets(DOC)["transport"]


def test_every_code_block_of_the_page_is_named_and_so_run_by_a_test() -> None:
    named = list(snippets(DOC).values()) + list(files(DOC).values())
    for language in ("js", "jsx", "ts", "tsx", "bash", "nginx", "python"):
        for block in fenced_blocks(DOC, language):
            assert block in named, f"an unnamed ```{language} block:\n{block[:200]}"


def test_the_file_blocks_are_the_files_word_for_word() -> None:
    blocks = files(DOC)
    assert len(blocks) >= 5
    for path, code in blocks.items():
        assert (ROOT / path).read_text() == code, f"docs/frontend.md differs from {path}"


def test_the_transport_snippet_chats_loads_and_stops(tmp_path: Path) -> None:
    require_node()
    (tmp_path / "node_modules").symlink_to((JS_DIR / "node_modules").resolve())
    with serve(tmp_path, "doc", provider="scripted", api_keys=KEYS) as server:
        code = transport_block()
        code = code.replace("'http://127.0.0.1:8000'", repr(server.url))
        code = code.replace("'your-api-key'", repr(ALICE_KEY))
        script = tmp_path / "frontend_doc.mjs"
        script.write_text(code + DRIVER)
        seen: dict[str, Any] = run_node(str(script))
    assert seen["before"] == []  # a chat that does not exist yet
    assert seen["answer"] == "Hello from the docs"
    assert seen["after"] == ["user", "assistant"]
    assert seen["types"][-2:] == ["abort", "finish"] and "stopped" in seen["types"]
    plan = seen["plan"]
    assert plan["metadataStreamId"] == plan["streamId"]  # the plan's stream, read from its start
    assert plan["data"]["data-complete"]["title"] == "Paris"
    assert plan["data"]["data-complete"]["currency"] == "EUR"
    assert plan["data"]["data-progress"]["progress"] == 95
    assert plan["data"]["data-status"]["message"] == "The plan is ready"
    assert "Louvre" in plan["text"]
    assert seen["refused"].startswith("planning failed: 422 ")
