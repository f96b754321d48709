"""examples/react-chat (useChat from @ai-sdk/react with `resume: true`) in Debian's chromium
against a real `tokenrelay serve`: built here with esbuild from the pinned packages, served
from another origin (CORS), and driven as a person would: the answer streams, tool progress
and sources show, Stop stops the server's stream, a reload mid-answer resumes it with nothing
lost or repeated, Regenerate replaces the answer, Edit says an earlier message again, and
Korean round-trips; "Plan a trip" starts the travel planner and shows its progress and
plan, read through a second useChat (again after a reload, mid-plan or after it), and says
why a plan was refused or failed."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import free_port
from tests.doc_blocks import files
from tests.e2e.conftest import ARTIFACTS, watched_page
from tests.e2e.server_process import ServerProcess, tokenrelay_serve
from tests.node import run_node

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "react-chat"
DOC = ROOT / "docs" / "frontend.md"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def _static(directory: Path, port: int) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServerProcess]]:
    """(the built app's origin, the tokenrelay it talks to across origins)."""
    out = tmp_path_factory.mktemp("react-chat")
    run_node("build_react_chat.mjs", str(EXAMPLE), str(out))
    port = free_port()
    env = {
        "TOKENRELAY_CORS_ORIGINS": f"http://127.0.0.1:{port}",
        "TOKENRELAY_DISCONNECT_GRACE_S": "30",  # a reload must find the answer still running
        "TOKENRELAY_TOOL_MODULES": json.dumps(["tests.tools.sample_tools"]),
        # the planner's weather tool must not leave this machine: nothing listens on port 9
        "TOKENRELAY_WEATHER_BASE_URL": "http://127.0.0.1:9",
        "TOKENRELAY_GEOCODING_BASE_URL": "http://127.0.0.1:9",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    data = tmp_path_factory.mktemp("react-chat-server")
    with _static(out, port) as origin, tokenrelay_serve(data, env=env) as server:
        yield origin, server


def _url(
    app: tuple[str, ServerProcess],
    chat: str,
    options: dict[str, Any],
    plan_options: dict[str, Any] | None = None,
) -> str:
    origin, server = app
    url = f"{origin}/?server={quote(server.url)}&chat={chat}&options={quote(json.dumps(options))}"
    if plan_options is not None:
        url += f"&plan_options={quote(json.dumps(plan_options))}"
    return url


def _send(page: Any, text: str) -> None:
    page.fill("input[name=q]", text)
    page.press("input[name=q]", "Enter")


def _answers(page: Any) -> list[str]:
    return [str(t) for t in page.locator(".assistant").all_text_contents()]


def _questions(page: Any) -> list[str]:
    return [str(t) for t in page.locator(".user p").all_text_contents()]


def _ready(page: Any) -> None:
    page.wait_for_selector("[data-status=ready]")


@pytest.mark.parametrize("component", ["Chat.jsx", "Planner.jsx"])
def test_the_doc_shows_the_example_component_word_for_word(component: str) -> None:
    shown = files(DOC)[f"examples/react-chat/src/{component}"]
    assert shown == (EXAMPLE / "src" / component).read_text()


def test_a_reload_mid_answer_resumes_it_with_nothing_lost_or_repeated(
    page: Any, app: tuple[str, ServerProcess]
) -> None:
    reply = " ".join(f"낱말{i}" for i in range(40))
    page.goto(_url(app, "react-resume", {"scripted": {"reply": reply, "delay_ms": 50}}))
    _ready(page)
    _send(page, "긴 답을 주세요")
    page.wait_for_function(
        "() => (document.querySelector('.assistant p')?.textContent ?? '').split(' ').length > 5"
    )
    page.reload()
    page.wait_for_selector(".assistant p")
    _ready(page)
    assert _questions(page) == ["긴 답을 주세요"]
    assert _answers(page) == [reply]  # one answer, whole, nothing twice
    page.screenshot(path=str(ARTIFACTS / "react_chat_resumed.png"))
    page.reload()  # finished: the stored chat shows it, and the resume finds nothing to do
    _ready(page)
    assert _answers(page) == [reply]


def test_tool_progress_and_sources_show(page: Any, app: tuple[str, ServerProcess]) -> None:
    _, server = app
    loaded = httpx.post(
        f"{server.url}/api/documents",
        json={
            "title": "Palaces of Seoul",
            "text": "Gyeongbokgung is the main royal palace of the Joseon dynasty.",
            "source": "https://example.org/palaces",
        },
        timeout=30,
    )
    assert loaded.status_code in (200, 201), loaded.text
    calls = [{"name": "steps", "arguments": {"count": 2}}]
    options = {"rag": True, "scripted": {"tool_calls": calls, "reply": "Gyeongbokgung."}}
    page.goto(_url(app, "react-tools", options))
    _ready(page)
    _send(page, "Which is the main palace?")
    page.wait_for_selector(".assistant p")
    _ready(page)
    answer = page.locator(".assistant")
    assert answer.locator("small").all_text_contents() == ["step 2 of 2"]
    assert answer.locator("code").all_text_contents() == ["steps: output-available"]
    link = answer.locator("a")
    assert link.text_content() == "Palaces of Seoul"
    assert link.get_attribute("href") == "https://example.org/palaces"
    assert answer.locator("p").all_text_contents() == ["Gyeongbokgung."]


def test_stop_stops_the_answer_on_the_server(page: Any, app: tuple[str, ServerProcess]) -> None:
    _, server = app
    options = {"scripted": {"reply": "one two three four five", "stall_after": 2}}
    page.goto(_url(app, "react-stop", options))
    _ready(page)
    _send(page, "stop me")
    page.wait_for_selector(".assistant p")
    page.get_by_role("button", name="Stop").click()
    _ready(page)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # the server's stream ended: nothing to resume, and the partial answer is kept
        for _ in range(100):
            stored = client.get("/api/ui/chat/react-stop/messages").json()["messages"]
            if stored[-1]["metadata"]["status"] != "streaming":
                break
        assert stored[-1]["metadata"]["status"] == "interrupted"
        assert client.get("/api/ui/chat/react-stop/stream").status_code == 204
    assert stored[-1]["parts"][-1]["text"] == "one two "


def test_regenerate_replaces_the_answer_and_korean_round_trips(
    page: Any, app: tuple[str, ServerProcess]
) -> None:
    _, server = app
    page.goto(_url(app, "react-regen", {"scripted": {"reply": "서울의 궁궐은 다섯 곳입니다."}}))
    _ready(page)
    _send(page, "서울에 궁궐이 몇 개 있나요?")
    page.wait_for_selector(".assistant p")
    _ready(page)
    first = page.get_attribute(".assistant", "data-id")
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function(
        "(first) => { const a = document.querySelector('.assistant');"
        " return a && a.dataset.id !== first"
        " && document.querySelector('[data-status=ready]') !== null; }",
        arg=first,
    )
    assert _answers(page) == ["서울의 궁궐은 다섯 곳입니다."]
    page.reload()
    _ready(page)
    assert _questions(page) == ["서울에 궁궐이 몇 개 있나요?"]
    assert _answers(page) == ["서울의 궁궐은 다섯 곳입니다."]
    history = httpx.get(f"{server.url}/api/sessions/react-regen", timeout=30).json()["messages"]
    superseded = [m for m in history if m["metadata"].get("superseded")]
    assert [m["role"] for m in superseded] == ["assistant"]


def test_edit_says_an_earlier_message_again(page: Any, app: tuple[str, ServerProcess]) -> None:
    _, server = app
    page.goto(_url(app, "react-edit", {"scripted": {"reply": "답입니다."}}))
    _ready(page)
    for question in ("첫 질문", "둘째 질문"):
        _send(page, question)
        page.wait_for_function(
            "(n) => document.querySelectorAll('.assistant p').length === n"
            " && document.querySelector('[data-status=ready]') !== null",
            arg=1 if question == "첫 질문" else 2,
        )
    page.locator(".user").first.get_by_role("button", name="Edit").click()
    assert page.input_value("input[name=q]") == "첫 질문"
    page.fill("input[name=q]", "고친 질문")
    page.press("input[name=q]", "Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('.user').length === 1"
        " && document.querySelectorAll('.assistant p').length === 1"
        " && document.querySelector('[data-status=ready]') !== null"
    )
    assert _questions(page) == ["고친 질문"] and _answers(page) == ["답입니다."]
    page.reload()
    _ready(page)
    assert _questions(page) == ["고친 질문"] and _answers(page) == ["답입니다."]
    history = httpx.get(f"{server.url}/api/sessions/react-edit", timeout=30).json()["messages"]
    current = [m["content"] for m in history if not m["metadata"].get("superseded")]
    assert current == ["고친 질문", "답입니다."]


def _activity(time: str, name: str, description: str, cost: int) -> dict[str, Any]:
    return {"time": time, "name": name, "description": description, "estimated_cost": cost}


PLAN = {
    "title": "Two days in Paris",
    "days": [
        {
            "day": 1,
            "date": "2030-06-01",
            "title": "Museums",
            "activities": [_activity("09:00", "Louvre", "Museum", 25000)],
        },
        {
            "day": 2,
            "date": "2030-06-02",
            "title": "Gardens",
            "activities": [
                _activity("10:00", "Tuileries", "Walk", 0),
                _activity("14:00", "Orsay", "Museum", 18000),
            ],
        },
    ],
    "total_estimated_cost": 43000,
    "currency": "KRW",  # the language's (ko-KR): the request names none
    "notes": "",
}


def test_plan_a_trip_shows_the_planners_progress_and_plan(
    page: Any, app: tuple[str, ServerProcess]
) -> None:
    plan_options = {"scripted": {"replies": [json.dumps(PLAN)], "tokens": 4, "delay_ms": 30}}
    page.goto(_url(app, "react-plan", {}, plan_options))
    _ready(page)
    planner = page.locator(".planner")
    planner.locator("input[name=location]").fill("Paris")
    planner.locator("input[name=start]").fill("2030-06-01")
    planner.locator("input[name=end]").fill("2030-06-02")
    planner.get_by_role("button", name="Plan").click()
    page.wait_for_selector(".plan progress")  # the progress shows while the plan is written
    page.wait_for_selector(".plan[data-status=ready] article")
    plan = page.locator(".plan")
    assert plan.locator("progress").get_attribute("value") == "95"
    # the page's language (the browser's, ko-KR here): "The plan is ready"
    assert plan.locator("small").text_content() == "일정이 준비되었습니다"
    assert plan.locator("h3").text_content() == "Two days in Paris"
    assert plan.locator("h4").all_text_contents() == [
        "Day 1 · 2030-06-01: Museums",
        "Day 2 · 2030-06-02: Gardens",
    ]
    assert plan.locator("li").all_text_contents() == [
        "09:00 Louvre: Museum",
        "10:00 Tuileries: Walk",
        "14:00 Orsay: Museum",
    ]
    assert plan.locator(".total").text_content() == "Total: 43000 KRW"
    draft = str(plan.locator("pre").text_content())  # the model's JSON, as readable text
    assert "Two days in Paris" in draft and "Tuileries" in draft and "{" not in draft
    page.screenshot(path=str(ARTIFACTS / "react_chat_plan.png"))
    page.reload()  # the plan's id is in the URL: its stream is read again, from its start
    page.wait_for_selector(".plan[data-status=ready] article")
    assert page.locator(".plan h3").text_content() == "Two days in Paris"
    assert page.locator(".plan .total").text_content() == "Total: 43000 KRW"


def _plan(page: Any, location: str, start: str, end: str) -> None:
    planner = page.locator(".planner")
    planner.locator("input[name=location]").fill(location)
    planner.locator("input[name=start]").fill(start)
    planner.locator("input[name=end]").fill(end)
    planner.get_by_role("button", name="Plan").click()


@pytest.fixture
def tab(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """conftest's `page`, except that a refused request's console line ("Failed to load
    resource: … 422") is expected: any other console error or script error fails the test."""
    yield from watched_page(browser, request, expected=lambda text: "status of 422" in text)


def test_a_refused_or_failed_plan_says_why(tab: Any, app: tuple[str, ServerProcess]) -> None:
    page = tab
    failing = {"scripted": {"reply": "Paris, day one", "tokens": 4, "error_after": 2}}
    page.goto(_url(app, "react-plan-errors", {}, failing))
    _ready(page)
    _plan(page, "Paris", "2030-06-02", "2030-06-01")  # refused before it starts: a 422
    refused = page.locator(".planner > [role=alert]")
    refused.wait_for()
    assert str(refused.text_content()).startswith("planning failed: 422 ")
    _plan(page, "Paris", "2030-06-01", "2030-06-01")  # fails while it runs
    failed = page.locator(".plan[data-status=error] [role=alert]")
    assert failed.text_content() == "스크립트대로 2조각 뒤에 실패했습니다"  # in the page's language
    assert page.locator(".planner > [role=alert]").count() == 0
    assert page.locator(".plan article").count() == 0


def test_a_reload_mid_plan_reads_it_on_with_nothing_twice(
    page: Any, app: tuple[str, ServerProcess]
) -> None:
    slow = {"scripted": {"replies": [json.dumps(PLAN)], "tokens": 8, "delay_ms": 250}}
    page.goto(_url(app, "react-plan-reload", {}, slow))
    _ready(page)
    _plan(page, "Paris", "2030-06-01", "2030-06-02")
    page.wait_for_selector(".plan[data-status=streaming] pre")  # the draft is being written
    page.reload()
    page.wait_for_selector(".plan[data-status=ready] article")
    assert page.locator(".plan h3").text_content() == "Two days in Paris"
    draft = str(page.locator(".plan pre").text_content())
    assert draft.count("Two days in Paris") == 1 and draft.count("Orsay") == 1
