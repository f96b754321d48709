"""Retrieval in the chat pipeline: sources before the first token, numbered context, done."""

from __future__ import annotations

import httpx

from tests.helpers import chat_stream

GUIDE = """# 경복궁 안내

경복궁은 서울 종로구에 있는 조선 왕조의 법궁이다. 1395년에 지어졌다.

## 입장료

경복궁의 입장료는 성인 3,000원이다. 한복을 입으면 무료로 입장할 수 있다.
"""

BUSAN = """# Haeundae Beach

Haeundae is Busan's most famous beach, busy from June to August.
"""


async def _ingest(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for title, text in (("경복궁 안내", GUIDE), ("Haeundae", BUSAN)):
            response = await client.post("/api/documents", json={"title": title, "text": text})
            assert response.status_code in (200, 201), response.text


async def test_sources_come_before_the_first_token_and_done_carries_them(live_server) -> None:
    async with live_server() as srv:
        await _ingest(srv.url)
        result = await chat_stream(
            srv.url,
            {"message": "경복궁에 가려면 입장료가 얼마예요?", "options": {"rag": {"top_k": 3}}},
        )
        provider = srv.app.state.services.providers.get("scripted")
    assert result.types[:2] == ["metadata", "sources"]
    assert result.types[-1] == "done"
    documents = result.events[1].json["documents"]
    assert documents, "the guide about 경복궁 is found"
    assert documents[0]["title"].startswith("경복궁")
    for doc in documents:
        assert {"id", "title", "snippet", "score", "metadata"} <= set(doc)
    assert result.last()["sources"] == documents
    assert provider.stats.completed == 1
    system = provider.last_request.messages[0]
    assert system.role == "system"
    assert "[1]" in system.content and "3,000원" in system.content
    assert "cite" in system.content


async def test_follow_up_question_uses_the_previous_turn(live_server) -> None:
    async with live_server(rag_enabled=True) as srv:
        await _ingest(srv.url)
        first = await chat_stream(srv.url, {"message": "경복궁은 어디에 있나요?"})
        follow = await chat_stream(
            srv.url,
            {"message": "그곳의 입장료는?", "session_id": first.last()["session_id"]},
        )
    docs = follow.events[1].json["documents"]
    assert follow.types[1] == "sources"
    assert docs and docs[0]["title"].startswith("경복궁")


async def test_no_documents_found_still_answers(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(
            srv.url, {"message": "quantum chromodynamics?", "options": {"rag": True}}
        )
    assert result.types[1] == "sources"
    assert result.events[1].json["documents"] == []
    assert result.types[-1] == "done"
    assert result.text


async def test_rag_off_sends_no_sources(live_server) -> None:
    async with live_server(rag_enabled=True) as srv:
        result = await chat_stream(srv.url, {"message": "hi", "options": {"rag": False}})
    assert "sources" not in result.types
