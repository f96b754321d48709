"""The chat page in Korean in chromium: the interface from its catalogue (the browser's
language, or ?lang=), and the server's messages in the same language (options.locale)."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_web_chat import page_url, send, wait_finished


def test_the_page_in_korean(page: Any, web_server: ServerProcess) -> None:
    options = {"scripted": {"reply": "경복궁은 서울 종로구에 있습니다.", "delay_ms": 5}}
    page.goto(page_url(web_server, options, lang=None))  # the browser's language: ko-KR
    page.wait_for_selector("html[data-lang-ready]", state="attached")
    assert page.evaluate("document.documentElement.lang") == "ko"
    assert page.text_content("#send") == "보내기"
    assert page.text_content("#new-chat") == "새 대화"
    assert page.get_attribute("#message", "placeholder") == (
        "메시지 (Enter로 보내기, Shift+Enter로 줄바꿈)"
    )
    assert "무엇이든 물어보세요" in (page.text_content("#welcome") or "")
    send(page, "경복궁은 어디에 있나요?")
    wait_finished(page)
    meta = page.locator(".message.assistant .meta").last.text_content() or ""
    assert meta.startswith("완료, 토큰 "), meta  # the finish line too
    page.screenshot(path=str(ARTIFACTS / "chat_korean.png"))


def test_an_error_from_the_server_in_korean(page: Any, web_server: ServerProcess) -> None:
    options = {"scripted": {"reply": "a b c d", "error_after": 2, "error_code": "PROVIDER_ERROR"}}
    page.goto(page_url(web_server, options, lang="ko"))
    page.wait_for_selector("html[data-lang-ready]", state="attached")
    send(page, "안녕하세요")
    page.wait_for_selector(".message.assistant .error, #error:not([hidden])")
    shown = page.evaluate(
        "() => [...document.querySelectorAll('.error')].map(e => e.textContent).join(' ')"
    )
    assert "PROVIDER_ERROR" in shown  # the code never changes with the language
    assert "스크립트대로 2조각 뒤에 실패했습니다" in shown
    assert "해결 방법:" in shown


def test_a_failed_tool_in_korean(page: Any, web_server: ServerProcess) -> None:
    """A tool's failure is shown in the page's language; the tool card's labels too."""
    calls = [{"name": "calculate", "arguments": {"expression": "1/0"}}]
    options = {"scripted": {"tool_calls": calls, "reply": "0으로는 나눌 수 없어요."}}
    page.goto(page_url(web_server, options, lang="ko"))
    page.wait_for_selector("html[data-lang-ready]", state="attached")
    send(page, "1 나누기 0은?")
    wait_finished(page)
    card = page.locator('.tool[data-state="failed"]')
    assert card.locator(".tool-state").text_content() == "실패"
    assert card.locator(".tool-result").text_content() == "오류: 0으로 나눌 수 없습니다"
    assert page.locator(".regenerate").text_content() == "다시 만들기"
    assert page.locator(".message.user .edit").text_content() == "고치기"


def test_lang_en_keeps_the_page_in_english(page: Any, web_server: ServerProcess) -> None:
    page.goto(page_url(web_server, {"scripted": {"reply": "hi"}}, lang="en"))
    assert page.text_content("#send") == "Send"
    assert page.evaluate("document.documentElement.lang") == "en"


def test_the_catalogue_is_served(web_server: ServerProcess) -> None:
    import httpx

    response = httpx.get(f"{web_server.url}/static/i18n-ko.json")
    assert response.status_code == 200
    assert json.loads(response.text)["Send"] == "보내기"
