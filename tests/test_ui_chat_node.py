"""useChat's backend read by the AI SDK itself (issue #21): a real `tokenrelay serve` process,
and tests/js/ui_chat.mjs driving it with `DefaultChatTransport` (whose `uiMessageChunkSchema`
validates every chunk), `readUIMessageStream`, `validateUIMessages` and the `Chat` class that
`useChat` wraps: text, tools with progress, sources, the planner, errors, abort and resume; the
chat reloaded from `/messages` shows the parts the live stream showed; an edit of an earlier
message (`sendMessage({ text, messageId })`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.node import require_node, run_node
from tests.processes import serve

ROOT = Path(__file__).resolve().parent.parent


def test_the_ai_sdk_reads_our_ui_message_stream(tmp_path: Path) -> None:
    require_node()
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    with serve(
        tmp_path,
        "ui",
        env={"PYTHONPATH": pythonpath},
        provider="scripted",
        tool_modules=json.dumps(["tests.tools.sample_tools"]),
        max_tool_rounds=1,  # a runaway tool loop is stopped after one round, with a status
        weather_base_url="http://127.0.0.1:9",  # the planner's weather lookup fails at once
        geocoding_base_url="http://127.0.0.1:9",
    ) as server:
        seen: dict[str, Any] = run_node("ui_chat.mjs", server.url, timeout=180)

    text = seen["text"]
    assert text["text"] == "안녕하세요! 반갑습니다."
    assert text["metadata"]["sessionId"] == "node-text"
    assert text["metadata"]["finishReason"] == "stop"
    assert text["metadata"]["usage"]["outputTokens"] == 5
    assert text["types"][0] == "start" and text["types"][-1] == "finish"
    assert [m["role"] for m in text["stored"]] == ["user", "assistant"]
    assert text["stored"][1]["id"] == text["id"]

    tools = seen["tools"]
    kinds = [p["type"] for p in tools["parts"]]
    assert kinds[:3] == ["step-start", "tool-steps", "tool-boom"]
    assert "data-tool-progress" in kinds and kinds[-1] == "text"
    steps = next(p for p in tools["parts"] if p["type"] == "tool-steps")
    assert steps["state"] == "output-available" and steps["output"] == {"steps": 2}
    boom = next(p for p in tools["parts"] if p["type"] == "tool-boom")
    assert boom["state"] == "output-error" and "disk on fire" in boom["errorText"]
    progress = next(p for p in tools["parts"] if p["type"] == "data-tool-progress")
    assert progress["id"] == "call-s" and progress["data"]["message"] == "step 2 of 2"
    stored_kinds = [p["type"] for p in tools["stored"][1]["parts"]]
    assert stored_kinds == [
        *("step-start", "tool-steps", "tool-boom", "data-tool-progress"),
        *("step-start", "text"),
    ]
    # a page that reloads after the answer shows what it showed live: the same parts, in order
    for case in ("text", "tools", "status", "sources", "errors", "abort"):
        reloaded = seen[case]["reloaded"]
        assert reloaded["stored"] == reloaded["live"], case
        assert reloaded["id"] == reloaded["liveId"], case
    status_kinds = [p["type"] for p in seen["status"]["reloaded"]["stored"]]
    assert status_kinds == [
        *("step-start", "tool-steps", "data-tool-progress"),
        *("step-start", "tool-steps", "data-status"),
    ]
    progress_stored = seen["status"]["reloaded"]["stored"][2]["data"]
    assert progress_stored["message"] == "step 3 of 3"  # the last one, as the page showed it
    assert "Stopped after 1 rounds" in seen["status"]["reloaded"]["stored"][-1]["data"]["message"]

    sources = seen["sources"]
    assert sources["parts"][0]["type"] == "source-url"
    assert sources["parts"][0]["url"] == "https://example.org/palaces"
    assert sources["stored"][1]["parts"][1]["type"] == "source-url"

    planner = seen["planner"]
    assert planner["types"][0] == "start" and planner["types"][-1] == "finish"
    data_kinds = {p["type"] for p in planner["data"]}
    assert {"data-progress", "data-status", "data-complete"} <= data_kinds
    plan = next(p for p in planner["data"] if p["type"] == "data-complete")
    assert plan["data"]["title"] == "Paris"
    progress_parts = [p for p in planner["data"] if p["type"] == "data-progress"]
    assert len(progress_parts) == 1  # one part, updated in place to the last step
    assert progress_parts[0]["data"]["step"] == "finalize"

    errors = seen["errors"]
    assert "no-such-provider" in errors["before"] or "provider" in errors["before"]
    assert errors["after"] and errors["text"] == "ab cd "
    assert errors["metadata"]["error"]["code"] == "PROVIDER_ERROR"
    assert errors["types"][-2:] == ["error", "finish"]

    abort = seen["abort"]
    assert abort["stopped"]["cancelled"] is True
    assert abort["types"][-2:] == ["abort", "finish"]
    assert abort["text"] == "a b "
    assert abort["after"] is None  # nothing left to resume: the transport got 204
    assert abort["stored"][1]["metadata"]["status"] == "interrupted"

    resume = seen["resume"]
    assert resume["loadedRoles"][0] == "user"
    assert resume["roles"] == ["user", "assistant"]  # the replay replaced the partial answer
    assert resume["text"] == [resume["expected"]]  # nothing lost, nothing twice
    assert resume["status"] == "ready"
    assert resume["again"] is None

    regenerate = seen["regenerate"]
    assert regenerate["roles"] == ["user", "assistant"]
    assert regenerate["text"] == "fresh answer"
    assert regenerate["stored"] == ["user", "assistant"]

    edit = seen["edit"]
    # the page named the message by its own id: cut back to it, its text replaced, answered
    assert edit["live"]["texts"] == ["first question, edited", "edited"]
    assert edit["live"]["status"] == "ready" and edit["live"].get("error") is None
    assert edit["ourId"] != edit["pageId"]  # after a reload: our id, from /messages
    assert edit["reloaded"]["texts"] == ["edited again", "again"]
    assert edit["reloaded"]["status"] == "ready"
    assert edit["stored"] == ["edited again", "again"]
    current = [m["content"] for m in edit["history"] if not m["superseded"]]
    assert current == ["edited again", "again"]
    kept = [m["content"] for m in edit["history"] if m["superseded"]]
    assert kept == [
        *("first question", "first answer", "second question", "second answer"),
        *("first question, edited", "edited"),
    ]
    unknown = edit["unknown"]
    assert unknown["status"] == 422
    assert unknown["body"]["code"] == "VALIDATION_ERROR"
    assert unknown["body"]["details"] == {"param": "messageId"}
    assert "수정할 수 있는 사용자 메시지가 아닙니다" in unknown["body"]["message"]
