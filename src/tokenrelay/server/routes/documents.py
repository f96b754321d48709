"""/api/documents: load, list, read, delete and search the user's documents (RAG).

POST accepts three bodies:
- JSON `{text, title?, source?, metadata?, id?}`
- multipart/form-data with a `file` part (.txt .md .html .pdf) and optional `title`, `source`
  and `metadata` (JSON text) fields; parsed with the standard library's email parser
- the raw file bytes with `?filename=guide.md` (e.g. `curl --data-binary @guide.md`)

With `Accept: text/event-stream` the answer is a stream instead of one JSON body (a large
upload embeds for a while): `progress` events `{"stage": "embedding", "done", "total"}` as
the chunks' vectors are computed, then one `document` event (the JSON body otherwise sent) or
one `error` event (our error JSON: a failed embedding call fails the document and nothing of
it is written). A request that is invalid before ingest starts gets its usual HTTP error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field

from tokenrelay.config import Settings
from tokenrelay.errors import (
    BackendUnavailable,
    DocumentNotFound,
    TokenRelayError,
    ValidationError,
)
from tokenrelay.i18n import tr
from tokenrelay.retrieval.base import Document, DocumentStore
from tokenrelay.retrieval.hybrid import RetrievalMode, embedding_progress, search_with_mode
from tokenrelay.retrieval.ingest import IngestResult, ingest_bytes, ingest_text
from tokenrelay.retrieval.owned import scoped_store
from tokenrelay.server.json_checks import CheckedRoute, check_json_value, too_deep
from tokenrelay.server.query_form import QueryForm
from tokenrelay.spelling import RequestModel

router = APIRouter(route_class=CheckedRoute, prefix="/api/documents", tags=["documents"])
logger = logging.getLogger("tokenrelay.documents")


class TextDocumentIn(RequestModel):
    text: str = Field(min_length=1)
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, max_length=200)


def get_store(request: Request) -> DocumentStore:
    store = getattr(request.app.state, "documents", None)
    if store is None:
        raise BackendUnavailable(
            tr("the document store is not available on this server"),
            suggestion=tr("ask without documents, or try again later"),
            details={"operator": "documents need SQLite FTS5 or PostgreSQL; see the server log"},
        )
    # with API keys on, each key sees only its own documents (retrieval/owned.py)
    return scoped_store(store, getattr(request.state, "owner", None))


def _settings(request: Request) -> Settings:
    found = getattr(request.app.state, "settings", None) or getattr(
        getattr(request.app.state, "services", None), "settings", None
    )
    return found if isinstance(found, Settings) else Settings()


def document_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "title": doc.title,
        "source": doc.source,
        "metadata": doc.metadata,
        "char_count": doc.char_count,
        "chunk_count": doc.chunk_count,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
    }


def _result_json(result: IngestResult) -> dict[str, Any]:
    return {**document_json(result.document), "status": result.status}


def _metadata_field(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep() from None
    except json.JSONDecodeError as e:
        raise ValidationError(
            tr("metadata is not JSON: {detail}", detail=str(e)),
            suggestion=tr("send metadata as a JSON object"),
        ) from e
    check_json_value(value)
    if not isinstance(value, dict):
        raise ValidationError(
            tr("metadata must be a JSON object"), suggestion=tr("send metadata as a JSON object")
        )
    return value


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[Message]]:
    """(text fields, file parts) of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise ValidationError(
            tr("malformed multipart body"), suggestion=tr("send a 'file' form field")
        )
    fields: dict[str, str] = {}
    files: list[Message] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            files.append(part)
        elif isinstance(name, str):
            payload = part.get_payload(decode=True)
            try:
                fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
            except UnicodeDecodeError:
                raise ValidationError(
                    tr("the form field {name!r} is not UTF-8 text", name=name),
                    suggestion=tr("send form fields as UTF-8 (files go in the 'file' part)"),
                ) from None
    return fields, files


def _too_large(size: int, limit: int) -> ValidationError:
    return ValidationError(
        tr("upload of {size} bytes is over the limit of {limit}", size=size, limit=limit),
        suggestion=tr("split the document into smaller files"),
        details={"operator": "the limit is TOKENRELAY_RAG_MAX_UPLOAD_BYTES"},
    )


@router.post("", status_code=201)
async def create_document(
    request: Request,
    filename: str | None = Query(default=None, description="name of a raw-body upload"),
    store: DocumentStore = Depends(get_store),
) -> Response:
    settings = _settings(request)
    chunking = {
        "chunk_chars": settings.rag_chunk_chars,
        "chunk_overlap": settings.rag_chunk_overlap,
    }
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if len(body) > settings.rag_max_upload_bytes:
        raise _too_large(len(body), settings.rag_max_upload_bytes)

    work: Callable[[], Awaitable[IngestResult]]
    if content_type.startswith("application/json") and filename is None:
        try:
            payload = TextDocumentIn.model_validate_json(body)
        except ValueError as e:
            raise ValidationError(
                tr("invalid document: {detail}", detail=str(e)),
                suggestion=tr("send a JSON object with text, title and metadata"),
            ) from e

        def work() -> Awaitable[IngestResult]:
            return ingest_text(
                store,
                payload.text,
                payload.title,
                payload.source,
                payload.metadata,
                document_id=payload.id,
                **chunking,
            )

    elif content_type.startswith("multipart/form-data"):
        fields, files = parse_multipart(content_type, body)
        if len(files) != 1:
            raise ValidationError(
                tr("expected one file in the form, got {count}", count=len(files)),
                suggestion=tr("send exactly one 'file' field"),
            )
        part = files[0]
        data = part.get_payload(decode=True)
        metadata = _metadata_field(fields.get("metadata"))

        def work() -> Awaitable[IngestResult]:
            return ingest_bytes(
                store,
                data if isinstance(data, bytes) else b"",
                part.get_filename() or "upload.txt",
                metadata,
                title=fields.get("title", ""),
                source=fields.get("source", ""),
                chunk_chars=settings.rag_chunk_chars,
                chunk_overlap=settings.rag_chunk_overlap,
            )

    elif filename:
        name = filename

        def work() -> Awaitable[IngestResult]:
            return ingest_bytes(
                store,
                body,
                name,
                chunk_chars=settings.rag_chunk_chars,
                chunk_overlap=settings.rag_chunk_overlap,
            )

    else:
        raise ValidationError(
            tr("unsupported content type {content_type}", content_type=content_type or "(none)"),
            suggestion=tr(
                "send JSON with text and title, a multipart 'file', or raw bytes with ?filename="
            ),
        )
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            progress_events(work),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await work()
    status = 200 if result.status == "unchanged" else 201
    return JSONResponse(_result_json(result), status_code=status)


def sse_frame(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


async def progress_events(work: Callable[[], Awaitable[IngestResult]]) -> AsyncIterator[bytes]:
    """`progress` events while `work` embeds, then its `document` or its `error`.

    A client that goes away cancels the ingest: the vectors are computed before anything is
    written, so a cancelled upload leaves the index as it was (hybrid.py)."""
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    async def run() -> IngestResult:
        embedding_progress.set(lambda done, total: queue.put_nowait((done, total)))
        return await work()  # the task has its own context: the setting ends with it

    task = asyncio.create_task(run())
    try:
        while not task.done() or not queue.empty():
            if queue.empty():
                waiter = asyncio.ensure_future(queue.get())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    continue
                done, total = waiter.result()
            else:
                done, total = queue.get_nowait()
            yield sse_frame("progress", {"stage": "embedding", "done": done, "total": total})
        try:
            result = task.result()
        except TokenRelayError as e:
            yield sse_frame("error", e.to_dict())
            return
        except Exception:
            logger.exception("ingesting an uploaded document failed")
            yield sse_frame(
                "error",
                TokenRelayError(
                    tr("the document could not be loaded"),
                    suggestion=tr("retry; if it keeps happening, report the trace id"),
                    retryable=True,
                ).to_dict(),
            )
            return
        yield sse_frame("document", _result_json(result))
    finally:
        if not task.done():
            task.cancel()


@router.get("")
async def list_documents(
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
    store: DocumentStore = Depends(get_store),
) -> dict[str, Any]:
    docs = await store.list_documents(limit=limit, offset=offset)
    documents, chunks = await store.count()
    return {
        "documents": [document_json(d) for d in docs],
        "total": documents,
        "total_chunks": chunks,
    }


class SearchQuery(RequestModel):
    """The query of `GET /api/documents/search`, in both spellings (`top_k`, `topK`)."""

    q: str = Field(min_length=1, max_length=2000, description="what to search for")
    top_k: int = Field(default=5, ge=1, le=50)
    min_score: float = Field(default=0.0, ge=0)
    mode: RetrievalMode | None = Field(
        default=None, description="lexical, semantic or hybrid; default: the server's setting"
    )


SEARCH_QUERY = QueryForm(SearchQuery)


@router.get("/search", openapi_extra={"parameters": SEARCH_QUERY.openapi_parameters()})
async def search_documents(
    query: SearchQuery = Depends(SEARCH_QUERY),
    store: DocumentStore = Depends(get_store),
) -> dict[str, Any]:
    found = await search_with_mode(store, query.q, query.top_k, query.min_score, query.mode)
    return {
        "query": query.q,
        "hits": [{**h.to_source(), "document_id": h.document_id} for h in found.hits],
        "retrieval": found.counts(),
    }


async def _existing(store: DocumentStore, document_id: str) -> Document:
    doc = await store.get_document(document_id)
    if doc is None:
        raise DocumentNotFound(
            tr("no document {document_id}", document_id=document_id),
            suggestion=tr("list the documents with GET /api/documents"),
        )
    return doc


@router.get("/{document_id}")
async def get_document(
    document_id: str,
    chunks: bool = Query(default=False, description="include the chunks"),
    store: DocumentStore = Depends(get_store),
) -> dict[str, Any]:
    doc = await _existing(store, document_id)
    out = document_json(doc)
    if chunks:
        out["chunks"] = [
            {"id": c.id, "ordinal": c.ordinal, "heading": c.heading, "text": c.text}
            for c in await store.get_chunks(document_id)
        ]
    return out


@router.delete("/{document_id}")
async def delete_document(
    document_id: str, store: DocumentStore = Depends(get_store)
) -> dict[str, Any]:
    if not await store.delete_document(document_id):
        raise DocumentNotFound(
            tr("no document {document_id}", document_id=document_id),
            suggestion=tr("list the documents with GET /api/documents"),
        )
    return {"id": document_id, "deleted": True}
