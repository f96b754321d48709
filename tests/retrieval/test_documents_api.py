"""The /api/documents router on a small app over httpx.ASGITransport, with the real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.retrieval.test_loaders import minimal_pdf
from tokenrelay.errors import TokenRelayError
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.server.routes import documents


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    async def on_ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TokenRelayError)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    app.add_exception_handler(TokenRelayError, on_ours)
    app.include_router(documents.router)
    store = await SqliteDocumentStore.open(tmp_path / "tokenrelay.sqlite3")
    app.state.documents = store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await store.close()


GUIDE = "# 경복궁\n\n경복궁의 입장료는 3,000원입니다. 화요일은 휴궁합니다.\n"


async def test_json_create_get_list_search_delete(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/documents", json={"text": GUIDE, "title": "궁궐", "metadata": {"city": "서울"}}
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["status"], doc["title"], doc["metadata"]) == ("created", "궁궐", {"city": "서울"})

    again = await client.post(
        "/api/documents", json={"text": GUIDE, "title": "궁궐", "metadata": {"city": "서울"}}
    )
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    assert again.json()["id"] == doc["id"]

    listed = (await client.get("/api/documents")).json()
    assert listed["total"] == 1 and listed["documents"][0]["id"] == doc["id"]

    got = (await client.get(f"/api/documents/{doc['id']}", params={"chunks": "true"})).json()
    assert got["chunks"][0]["heading"] == "경복궁"

    found = (await client.get("/api/documents/search", params={"q": "경복궁은 언제 쉬나요"})).json()
    assert found["hits"][0]["document_id"] == doc["id"]
    assert "경복궁" in found["hits"][0]["snippet"]

    r = await client.delete(f"/api/documents/{doc['id']}")
    assert r.json() == {"id": doc["id"], "deleted": True}
    assert (await client.get("/api/documents")).json()["total"] == 0


async def test_missing_document_is_404_with_stable_code(client: httpx.AsyncClient) -> None:
    for r in (
        await client.get("/api/documents/doc_nope"),
        await client.delete("/api/documents/doc_nope"),
    ):
        assert r.status_code == 404
        assert r.json()["code"] == "DOCUMENT_NOT_FOUND"
        assert r.json()["suggestion"]


async def test_multipart_upload_markdown_and_pdf(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/documents",
        files={"file": ("guide.md", GUIDE.encode(), "text/markdown")},
        data={"metadata": json.dumps({"team": "travel"}), "title": "Palace guide"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["title"] == "Palace guide"
    assert body["metadata"] == {"format": "markdown", "filename": "guide.md", "team": "travel"}

    pdf = minimal_pdf(["Jeju ferries leave Mokpo at 9am."], title="Ferries")
    r = await client.post("/api/documents", files={"file": ("ferries.pdf", pdf, "application/pdf")})
    assert r.status_code == 201, r.text
    assert r.json()["title"] == "Ferries"
    hits = (await client.get("/api/documents/search", params={"q": "ferry Mokpo"})).json()["hits"]
    assert hits[0]["title"] == "Ferries"


async def test_raw_body_upload_with_filename(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/documents",
        params={"filename": "busan.html"},
        content="<title>부산</title><h1>해운대</h1><p>해수욕장</p>".encode(),
        headers={"content-type": "text/html"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["title"] == "부산"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"json": {"text": "   "}}, "no text"),
        ({"json": {"title": "no text"}}, "invalid document"),
        ({"files": {"file": ("slides.pptx", b"x", "application/octet-stream")}}, "unsupported"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, "content type"),
        (
            {
                "files": {"file": ("a.md", b"# A\n\nb", "text/markdown")},
                "data": {"metadata": "[1]"},
            },
            "metadata",
        ),
    ],
)
async def test_bad_input_is_422_validation_error(
    client: httpx.AsyncClient, kwargs: dict[str, object], fragment: str
) -> None:
    r = await client.post("/api/documents", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert fragment in r.json()["message"]
    assert r.json()["suggestion"]
