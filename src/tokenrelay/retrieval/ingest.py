"""Load -> chunk -> upsert. The only module that reads files; the HTTP route and CLI call it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenrelay.errors import TokenRelayError, ValidationError
from tokenrelay.retrieval.base import Document, DocumentStore, UpsertStatus
from tokenrelay.retrieval.chunking import chunk_text, content_hash, document_id_for
from tokenrelay.retrieval.loaders import SUPPORTED_SUFFIXES, load_bytes

DEFAULT_CHUNK_CHARS = 800
DEFAULT_CHUNK_OVERLAP = 120


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
    if not text.strip():
        raise ValidationError(
            f"{source or title or 'document'}: no text to index",
            suggestion="send non-empty text (a scanned PDF needs OCR first)",
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
    status = await store.upsert(document, chunks)
    return IngestResult(document, status)


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
) -> IngestReport:
    """Files and folders; a file that cannot be read is reported in `skipped`, not raised."""
    report = IngestReport()
    for file in iter_files(paths):
        if not file.exists():
            report.skipped.append((str(file), "no such file"))
            continue
        if file.suffix.lower() not in SUPPORTED_SUFFIXES:
            report.skipped.append((str(file), f"unsupported type {file.suffix or '(none)'}"))
            continue
        try:
            result = await ingest_file(
                store, file, metadata, chunk_chars=chunk_chars, chunk_overlap=chunk_overlap
            )
        except TokenRelayError as e:
            report.skipped.append((str(file), e.message))
            continue
        except OSError as e:
            report.skipped.append((str(file), str(e)))
            continue
        report.results.append(result)
        report.bytes_read += result.document.char_count
    return report
