"""The page's SSE parser, tool events and planner progress, in a real browser."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess
from tests.e2e.test_web_chat import answer, page_url, send, wait_finished

PARSE = """async ({ whole, korean }) => {
  const { SSEParser } = await import('/static/sse.js');
  const run = (chunks) => {
    const out = [], retries = [], comments = [];
    const p = new SSEParser((e) => out.push(e), {
      onRetry: (ms) => retries.push(ms), onComment: (c) => comments.push(c) });
    for (const c of chunks) p.feed(c);
    p.end();
    return JSON.stringify({ out, retries, comments });
  };
  const reference = run([whole]);
  const results = { reference: JSON.parse(reference), differing: [] };
  for (let i = 0; i <= whole.length; i++) {  // split at every position, CR/LF pairs included
    if (run([whole.slice(0, i), whole.slice(i)]) !== reference) results.differing.push(i);
  }
  const bytes = new TextEncoder().encode(whole);  // one byte at a time: UTF-8 split too
  results.byteWise = run(Array.from(bytes, (b) => new Uint8Array([b]))) === reference;
  const kb = new TextEncoder().encode(korean);
  results.korean = JSON.parse(run(Array.from(kb, (b) => new Uint8Array([b])))).out;
  return results;
}"""

WHOLE = (
    '\ufeffid: s:1\r\nevent: token\r\ndata: {"a":1}\r\nretry: 3000\r\n\r\n'
    ": ping\n\n"
    "data: line1\ndata:line2\n\n"
    "id: s:2\rdata: x\r\r"
    "unknown: field\nevent: ignored-without-data\n\n"
    "data: no new id\n\n"
    "data: unterminated"
)


def test_sse_parser_handles_any_split(page: Any, web_server: ServerProcess) -> None:
    page.goto(web_server.url + "/")
    result = page.evaluate(PARSE, {"whole": WHOLE, "korean": 'data: {"c":"안녕하세요 🏯"}\n\n'})
    assert result["reference"] == {
        "out": [
            {"type": "token", "data": '{"a":1}', "id": "s:1"},
            {"type": "message", "data": "line1\nline2", "id": "s:1"},
            {"type": "message", "data": "x", "id": "s:2"},
            {"type": "message", "data": "no new id", "id": "s:2"},
        ],
        "retries": [3000],
        "comments": ["ping"],
    }
    assert result["differing"] == []
    assert result["byteWise"] is True
    assert result["korean"] == [{"type": "message", "data": '{"c":"안녕하세요 🏯"}', "id": ""}]


def _stream_types(server: ServerProcess, body: dict[str, Any], path: str) -> list[str]:
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=30) as response:
        if response.status_code == 404:
            return []
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line[6:]).get("type", "") for line in lines]


TOOL_OPTIONS = {
    "scripted": {
        "tool_calls": [{"name": "calculate", "arguments": {"expression": "6 * 7"}}],
        "reply": "6 × 7 = 42.",
        "delay_ms": 20,
    }
}


def test_tool_events_are_shown(page: Any, web_server: ServerProcess) -> None:
    probe = _stream_types(
        web_server, {"message": "probe", "options": TOOL_OPTIONS}, "/api/chat/stream"
    )
    if "tool_result" not in probe:
        pytest.skip(
            "server tools have not landed: POST /api/chat/stream runs no tool yet "
            "(pipelines/agent.py + tools/ wiring); events seen: " + ",".join(sorted(set(probe)))
        )
    page.goto(page_url(web_server, TOOL_OPTIONS))
    send(page, "6 곱하기 7은?")
    card = page.locator(".tool[data-call-id]").first
    card.wait_for()
    wait_finished(page)
    assert card.locator(".tool-name").text_content() == "calculate"
    assert card.get_attribute("data-state") == "done"
    assert "6 * 7" in card.locator(".tool-args").text_content()
    assert "42" in card.locator(".tool-result").text_content()
    assert answer(page).locator(".text").text_content() == "6 × 7 = 42."


PLAN = {
    "title": "Busan in two days",
    "days": [
        {
            "day": i + 1,
            "date": f"2030-06-0{i + 1}",
            "title": f"Day {i + 1}",
            "activities": [
                {
                    "time": "09:00",
                    "name": "Haeundae Beach",
                    "description": "Walk",
                    "estimated_cost": 0,
                },
                {
                    "time": "13:00",
                    "name": "Jagalchi Market",
                    "description": "Lunch",
                    "estimated_cost": 20,
                },
            ],
        }
        for i in range(2)
    ],
    "total_estimated_cost": 40,
    "currency": "KRW",
    "notes": "Bring sunscreen.",
}


def test_planner_progress_is_shown(page: Any, web_server: ServerProcess) -> None:
    paths = httpx.get(f"{web_server.url}/openapi.json").json()["paths"]
    if "/api/plans/generate/stream" not in paths:
        pytest.skip("the planner has not landed: no POST /api/plans/generate/stream yet")
    seen: list[float] = []
    page.expose_function("reportProgress", lambda value: seen.append(float(value)))
    scripted = {"replies": [json.dumps(PLAN, ensure_ascii=False)], "tokens": 6, "delay_ms": 20}
    page.goto(page_url(web_server, {"scripted": scripted}, plan="1"))
    assert page.is_visible("#plan-fields")
    page.evaluate(
        """() => new MutationObserver(() => {
             const bar = document.querySelector('.progress progress');
             if (bar) window.reportProgress(bar.value);
           }).observe(document.getElementById('messages'),
                      {subtree: true, attributes: true, childList: true})"""
    )
    page.fill("#plan-location", "Busan")
    page.fill("#plan-start", "2030-06-01")
    page.fill("#plan-end", "2030-06-02")
    page.fill("#message", "바다와 시장")
    page.press("#message", "Enter")
    page.wait_for_selector(".progress progress")
    wait_finished(page)
    assert page.evaluate("document.querySelector('.progress progress').value") == 100
    assert seen == sorted(seen) and len(set(seen)) > 1, seen
    plan = answer(page).locator(".result .plan")
    assert plan.locator("h3").text_content() == "Busan in two days"
    assert "Jagalchi Market" in plan.text_content()
    assert "Plan a trip to Busan" in page.locator(".message.user .text").last.text_content()
