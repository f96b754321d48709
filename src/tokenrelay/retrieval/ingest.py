"""Load -> chunk -> upsert. The only module that reads files; the HTTP route and CLI call it.

Chunking (`prepare_text`) is pure; storing goes through `store_prepared`, which hands a whole
batch of documents to a store's `upsert_many` (one transaction, one thread hop on SQLite) and
falls back to `upsert` one by one for stores without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenrelay.errors import TokenRelayError, ValidationError
from tokenrelay.i18n import tr
from tokenrelay.retrieval.base import (
    BatchingStore,
    Chunk,
    Document,
    DocumentStore,
    UpsertStatus,
)
from tokenrelay.retrieval.chunking import chunk_text, content_hash, document_id_for
from tokenrelay.retrieval.loaders import SUPPORTED_SUFFIXES, load_bytes

DEFAULT_CHUNK_CHARS = 800
DEFAULT_CHUNK_OVERLAP = 120
BATCH_CHARS = 2_000_000  # characters of text per write transaction in `ingest_paths`
BATCH_DOCUMENTS = 500
_CHUNK_IN_THREAD_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    document: Document
    status: UpsertStatus


@dataclass
class IngestReport:
    results: list[IngestResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    bytes_read: int = 0

    @property
    def chunks(self) -> int:
        return sum(r.document.chunk_count for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {"created": 0, "updated": 0, "unchanged": 0, "skipped": len(self.skipped)}
        for r in self.results:
            out[r.status] += 1
        return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to store: its record and its chunks (pure, no I/O)."""

    document: Document
    chunks: list[Chunk]


def prepare_text(
    text: str,
    title: str = "",
    source: str = "",
    metadata: dict[str, Any] | None = None,
    *,
    document_id: str | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> Prepared:
    """Chunk `text` and describe it; the same text (or the same source) gets the same ids."""
    if not text.strip():
        raise ValidationError(
            tr("{name}: no text to index", name=source or title or "document"),
            suggestion=tr("send non-empty text (a scanned PDF needs OCR first)"),
        )
    doc_id = document_id or document_id_for(text, source)
    chunks = chunk_text(doc_id, text, chunk_chars=chunk_chars, overlap=chunk_overlap)
    document = Document(
        id=doc_id,
        title=title.strip() or _first_line(text),
        source=source,
        metadata=dict(metadata or {}),
        content_hash=content_hash(text),
        char_count=len(text),
        chunk_count=len(chunks),
    )
    return Prepared(document, chunks)


async def store_prepared(store: DocumentStore, items: Sequence[Prepared]) -> list[IngestResult]:
    """One batch: one transaction on a store that can batch (`BatchingStore`), else one each."""
    if not items:
        return []
    pairs = [(p.document, p.chunks) for p in items]
    if isinstance(store, BatchingStore):
        statuses = await store.upsert_many(pairs)
    else:
        statuses = [await store.upsert(d, c) for d, c in pairs]
    return [IngestResult(p.document, s) for p, s in zip(items, statuses, strict=True)]


async def ingest_text(
    store: DocumentStore,
    text: str,
    title: str = "",
    source: str = "",
    metadata: dict[str, Any] | None = None,
    *,
    document_id: str | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> IngestResult:
    """Chunk `text` and store it; the same text (or the same source) replaces, never duplicates."""
    args = (text, title, source, metadata)
    options: dict[str, Any] = {
        "document_id": document_id,
        "chunk_chars": chunk_chars,
        "chunk_overlap": chunk_overlap,
    }
    if len(text) > _CHUNK_IN_THREAD_CHARS:  # a large upload: keep the event loop free
        prepared = await asyncio.to_thread(prepare_text, *args, **options)
    else:
        prepared = prepare_text(*args, **options)
    return (await store_prepared(store, [prepared]))[0]


def _first_line(text: str) -> str:
    line = next((ln.strip().lstrip("#").strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:80] or "Untitled"


async def ingest_bytes(
    store: DocumentStore,
    data: bytes,
    filename: str,
    metadata: dict[str, Any] | None = None,
    *,
    title: str = "",
    source: str = "",
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> IngestResult:
    """An uploaded file: the loader is picked by the suffix of `filename`."""
    loaded = load_bytes(data, filename)
    meta = {"format": loaded.format, "filename": Path(filename).name, **(metadata or {})}
    return await ingest_text(
        store,
        loaded.text,
        title or loaded.title,
        source or filename,
        meta,
        chunk_chars=chunk_chars,
        chunk_overlap=chunk_overlap,
    )


async def ingest_file(
    store: DocumentStore,
    path: Path | str,
    metadata: dict[str, Any] | None = None,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> IngestResult:
    """One file; its resolved path is the source, so editing and re-ingesting replaces it."""
    file = await asyncio.to_thread(Path(path).resolve)
    data = await asyncio.to_thread(file.read_bytes)
    return await ingest_bytes(
        store,
        data,
        file.name,
        metadata,
        source=str(file),
        chunk_chars=chunk_chars,
        chunk_overlap=chunk_overlap,
    )


def iter_files(paths: Iterable[Path | str]) -> list[Path]:
    """Supported files under `paths` (folders walked recursively, hidden entries skipped)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                hidden = any(part.startswith(".") for part in rel.parts)
                if child.is_file() and not hidden and child.suffix.lower() in SUPPORTED_SUFFIXES:
                    found.append(child)
        else:
            found.append(path)
    return found


async def ingest_paths(
    store: DocumentStore,
    paths: Iterable[Path | str],
    metadata: dict[str, Any] | None = None,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    batch_chars: int = BATCH_CHARS,
) -> IngestReport:
    """Files and folders; a file that cannot be read is reported in `skipped`, not raised.

    Files are read, parsed and chunked in a worker thread and stored in batches of about
    `batch_chars` characters, each batch one transaction (`store_prepared`).
    """
    report = IngestReport()
    batch: list[Prepared] = []
    size = 0
    for file in iter_files(paths):
        try:
            prepared = await asyncio.to_thread(
                _prepare_file, file, metadata, chunk_chars, chunk_overlap
            )
        except TokenRelayError as e:
            report.skipped.append((str(file), e.message))
            continue
        except OSError as e:
            report.skipped.append((str(file), str(e)))
            continue
        batch.append(prepared)
        size += prepared.document.char_count
        if size >= batch_chars or len(batch) >= BATCH_DOCUMENTS:
            report.results += await store_prepared(store, batch)
            batch, size = [], 0
    report.results += await store_prepared(store, batch)
    report.bytes_read = sum(r.document.char_count for r in report.results)
    return report


def _prepare_file(
    file: Path, metadata: dict[str, Any] | None, chunk_chars: int, chunk_overlap: int
) -> Prepared:
    """Read, load and chunk one file (blocking: runs in a worker thread)."""
    if not file.exists():
        raise ValidationError(
            tr("no such file: {name}", name=file.name), suggestion=tr("check the file's path")
        )
    if file.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValidationError(
            tr("unsupported type {suffix}", suffix=file.suffix or "(none)"),
            suggestion=tr("use one of: {known}", known=", ".join(sorted(SUPPORTED_SUFFIXES))),
        )
    resolved = file.resolve()
    loaded = load_bytes(resolved.read_bytes(), resolved.name)
    meta = {"format": loaded.format, "filename": resolved.name, **(metadata or {})}
    return prepare_text(
        loaded.text,
        loaded.title,
        str(resolved),
        meta,
        chunk_chars=chunk_chars,
        chunk_overlap=chunk_overlap,
    )
