"""The chat page in a real browser against a real server process."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.server_process import ServerProcess

REPLY = "경복궁은 서울 종로구에 있는 조선 왕조의 법궁입니다. It streams word by word to you."


def page_url(
    server: ServerProcess,
    options: dict[str, Any] | None = None,
    lang: str | None = "en",  # these tests read the English interface; None: the browser's
    **query: str,
) -> str:
    params = [f"{k}={v}" for k, v in query.items()]
    if lang is not None:
        params.append(f"lang={lang}")
    if options is not None:
        params.append("options=" + quote(json.dumps(options)))
    return f"{server.url}/" + ("?" + "&".join(params) if params else "")


def send(page: Any, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def answer(page: Any) -> Any:
    return page.locator(".message.assistant").last


def wait_finished(page: Any) -> None:
    page.wait_for_selector(".message.assistant[aria-busy='false']")


def test_send_streams_tokens_and_finishes(page: Any, web_server: ServerProcess) -> None:
    page.goto(page_url(web_server, {"scripted": {"reply": REPLY, "delay_ms": 60}}))
    send(page, "경복궁은 어디에 있나요?")
    # mid-answer: some text, the cursor, Stop offered, Send disabled
    page.wait_for_function(
        "() => { const a = document.querySelector('.message.assistant.streaming .text');"
        " return a && a.textContent.length > 0; }"
    )
    assert page.is_visible("#stop") and page.is_disabled("#send")
    cursor = page.evaluate(
        "getComputedStyle(document.querySelector('.message.streaming .text'), '::after').content"
    )
    assert cursor == '"▍"'
    partial = answer(page).locator(".text").text_content()
    assert partial and len(partial) < len(REPLY) and REPLY.startswith(partial)
    page.screenshot(path=str(ARTIFACTS / "chat_streaming.png"))

    wait_finished(page)
    assert answer(page).locator(".text").text_content() == REPLY
    assert "streaming" not in (answer(page).get_attribute("class") or "")
    assert answer(page).locator(".meta").text_content().startswith("finished")
    assert page.is_hidden("#stop") and page.is_enabled("#send")
    # the conversation is listed, marked current, and a follow-up continues it
    session_id = page.evaluate("tokenrelayState().sessionId")
    page.wait_for_selector(f"li[data-session-id='{session_id}'] [aria-current='true']")
    send(page, "그리고?")
    page.wait_for_function("document.querySelectorAll('.message.assistant').length === 2")
    wait_finished(page)
    history = httpx.get(f"{web_server.url}/api/sessions/{session_id}").json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 2


def test_stop_cancels_the_stream_on_the_server(page: Any, web_server: ServerProcess) -> None:
    page.goto(page_url(web_server, {"scripted": {"reply": REPLY, "stall_after": 3}}))
    send(page, "stop me")
    page.wait_for_function(
        "() => (document.querySelector('.message.assistant .text') || {}).textContent"
    )
    state = page.evaluate("tokenrelayState()")
    page.click("#stop")
    page.wait_for_selector(".message.assistant .notice:has-text('Stopped.')")
    assert page.is_hidden("#error")
    # the server says so too: the stream ended in CANCELLED, the answer is kept as interrupted
    replay = httpx.get(f"{web_server.url}/api/streams/{state['streamId']}", timeout=10).text
    last = [line for line in replay.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["code"] == "CANCELLED"
    history = httpx.get(f"{web_server.url}/api/sessions/{state['sessionId']}").json()
    assert history["messages"][-1]["status"] == "interrupted"


def test_resume_after_the_connection_drops(page: Any, web_server: ServerProcess) -> None:
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    reply = " ".join(f"w{i}" for i in range(40))
    page.goto(page_url(web_server, {"scripted": {"reply": reply, "delay_ms": 40}}))
    send(page, "keep going")
    page.wait_for_function(
        "() => ((document.querySelector('.message.assistant .text') || {}).textContent || '')"
        ".split(' ').length > 5"
    )
    assert page.evaluate("debugDropConnection()") is True
    wait_finished(page)
    assert answer(page).locator(".text").text_content() == reply  # nothing lost or repeated
    assert answer(page).locator(".meta").text_content().startswith("finished")
    resumed = [r for r in requests if "/api/streams/" in r.url and r.method == "GET"]
    assert resumed, "the page did not reconnect"
    stream_id = resumed[0].url.rsplit("/", 1)[-1]
    assert resumed[0].headers["last-event-id"].startswith(f"{stream_id}:")


def test_sources_are_shown(page: Any, web_server: ServerProcess) -> None:
    response = httpx.post(
        f"{web_server.url}/api/documents",
        json={
            "title": "Busan travel notes",
            "text": "Haeundae Beach in Busan is famous for its sand and summer festivals. "
            "Gamcheon Culture Village has colourful houses on a hillside.",
        },
    )
    assert response.status_code == 201, response.text
    page.goto(page_url(web_server, {"scripted": {"reply": "Haeundae is a beach."}}, rag="1"))
    assert page.is_checked("#rag")
    send(page, "Tell me about Haeundae Beach in Busan")
    page.wait_for_selector(".sources li.source")
    wait_finished(page)
    sources = answer(page).locator(".sources")
    assert "Sources (" in sources.locator("summary").text_content()
    assert "Busan travel notes" in sources.locator("li.source strong").first.text_content()
    assert "Haeundae" in sources.locator(".snippet").first.text_content()


def test_korean_ime_and_keyboard(page: Any, web_server: ServerProcess) -> None:
    page.goto(page_url(web_server, {"scripted": {"reply": "네"}}))
    page.fill("#message", "안녕하세")
    # the Enter that commits a composition (Chrome: isComposing; Safari: keyCode 229) must not send
    page.evaluate(
        """() => {
          const box = document.getElementById('message');
          box.dispatchEvent(new KeyboardEvent('keydown',
            {key: 'Enter', isComposing: true, bubbles: true, cancelable: true}));
          box.dispatchEvent(new KeyboardEvent('keydown',
            {key: 'Enter', keyCode: 229, bubbles: true, cancelable: true}));
          box.dispatchEvent(new CompositionEvent('compositionstart', {data: '요'}));
          box.dispatchEvent(new KeyboardEvent('keydown',
            {key: 'Enter', bubbles: true, cancelable: true}));
          box.dispatchEvent(new CompositionEvent('compositionend', {data: '요'}));
        }"""
    )
    assert page.locator(".message").count() == 0
    assert page.input_value("#message") == "안녕하세"
    page.press("#message", "Shift+Enter")  # a new line, not a send
    assert page.locator(".message").count() == 0
    page.press("#message", "Enter")
    wait_finished(page)
    assert page.locator(".message.user .text").text_content() == "안녕하세\n"
    assert page.input_value("#message") == ""
    # labelled controls, reachable by keyboard
    assert page.get_attribute("#messages", "role") == "log"
    assert page.locator("label[for='message']").count() == 1
    assert page.evaluate("document.activeElement.id") == "message"


def test_phone_width(page: Any, web_server: ServerProcess) -> None:
    page.set_viewport_size({"width": 390, "height": 760})
    page.goto(page_url(web_server, {"scripted": {"reply": "짧은 답변입니다."}}))
    assert page.is_hidden("#sidebar") or not page.locator("#sidebar").is_visible()
    send(page, "휴대폰에서도 되나요?")
    wait_finished(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    page.click("#toggle-sidebar")
    assert page.get_attribute("#toggle-sidebar", "aria-expanded") == "true"
    page.wait_for_selector("#sessions li")
    page.wait_for_function(
        "getComputedStyle(document.getElementById('sidebar')).transform === 'none'"
    )
    page.screenshot(path=str(ARTIFACTS / "phone_sidebar.png"))
    page.click("#close-sidebar")
    assert page.get_attribute("#toggle-sidebar", "aria-expanded") == "false"
    assert page.evaluate("document.activeElement.id") == "toggle-sidebar"


def _answers_settled(page: Any, count: int) -> None:
    page.wait_for_function(
        "(n) => { const a = document.querySelectorAll('.message.assistant');"
        " return a.length === n && a[n - 1].getAttribute('aria-busy') === 'false'; }",
        arg=count,
    )


def test_regenerate_and_edit(page: Any, web_server: ServerProcess) -> None:
    """Issue #23: Regenerate on the last answer streams a new one in its place; Edit on a
    message of yours says it again and continues from there. The server keeps what they
    replaced as earlier versions; a reopened conversation shows only the current one."""
    scripted = "This is tokenrelay's scripted answer to: {}"
    page.goto(page_url(web_server, {"scripted": {"delay_ms": 5}}))
    send(page, "first question")
    _answers_settled(page, 1)
    send(page, "second question")
    _answers_settled(page, 2)
    # Regenerate is offered on the last answer only
    assert page.locator(".regenerate").count() == 1
    assert answer(page).locator(".regenerate").count() == 1
    first_answer = answer(page).locator(".text").text_content()
    page.click(".regenerate")
    _answers_settled(page, 2)
    assert answer(page).locator(".text").text_content() == first_answer  # same question
    session_id = page.evaluate("tokenrelayState().sessionId")
    url = f"{web_server.url}/api/sessions/{session_id}"
    history = httpx.get(url).json()["messages"]
    assert [m["superseded"] for m in history] == [False, False, False, True, False]
    assert history[4]["versions"] == [history[3]["id"]]
    page.screenshot(path=str(ARTIFACTS / "chat_regenerated.png"))

    page.locator(".message.user").first.locator(".edit").click()
    page.fill(".edit-box", "다른 질문")
    page.click(".edit-form .save")
    _answers_settled(page, 1)
    assert answer(page).locator(".text").text_content() == scripted.format("다른 질문")
    assert page.locator(".message.user .text").all_text_contents() == ["다른 질문"]
    history = httpx.get(url).json()["messages"]
    current = [m["content"] for m in history if not m["superseded"]]
    assert current == ["다른 질문", scripted.format("다른 질문")]
    assert len(history) == 7  # the old branch is kept

    # reopened: the current conversation only, with Regenerate on its answer
    page.reload()
    page.click(f"li[data-session-id='{session_id}'] .open")
    page.wait_for_selector(".message.assistant .regenerate")
    assert page.locator(".message .text").all_text_contents() == current
