"""Structure-aware chunking of markdown / plain text, with overlap and content-hash ids. Pure.

1. `split_blocks` walks the lines: markdown headings (`#`..`######`, or a line underlined with
   `===`/`---`) update the heading path; blank lines end a paragraph; fenced code stays whole.
2. `chunk_text` packs the paragraphs of one section into chunks of at most `chunk_chars`;
   a paragraph that is too long is split at sentence ends (then, if need be, at spaces).
   A new section always starts a new chunk, and its heading path travels with every chunk
   as context. Inside a section, each chunk repeats the last sentences of the one before, up to
   `overlap` characters, so that an answer on the boundary is found whole.
3. Ids are hashes of content: the same document text gives the same document and chunk ids, so
   re-ingesting replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tokenrelay.retrieval.base import Chunk

_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# sentence end: . ! ? 。 (optionally closed by a quote or bracket) followed by whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?。])[\"')\]]*\s+")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_id_for(text: str, source: str = "") -> str:
    """A file keeps its id when edited (keyed by source); pasted text is keyed by its content."""
    key = f"source:{source}" if source else f"text:{text}"
    return "doc_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _chunk_id(document_id: str, heading: str, text: str, repeat: int) -> str:
    key = f"{document_id}\x00{heading}\x00{text}\x00{repeat}"
    return "chk_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Block:
    heading: str  # "A > B > C"
    text: str
    start: int
    end: int


def split_blocks(text: str) -> list[Block]:
    """Paragraphs with their heading path and character offsets."""
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []  # (level, title)
    para: list[str] = []
    para_start = 0
    pos = 0
    in_fence = False

    def heading() -> str:
        return " > ".join(title for _, title in path)

    def flush(end: int) -> None:
        body = "\n".join(para).strip()
        if body:
            blocks.append(Block(heading(), body, para_start, end))
        para.clear()

    def set_heading(level: int, title: str) -> None:
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title.strip()))

    lines = text.splitlines(keepends=True)
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        line_start = pos
        pos += len(raw)
        if _FENCE.match(line):
            if not para:
                para_start = line_start
            para.append(line)
            in_fence = not in_fence
            continue
        if in_fence:
            para.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            flush(line_start)
            set_heading(len(atx.group(1)), atx.group(2))
            continue
        next_line = lines[i + 1].rstrip("\r\n") if i + 1 < len(lines) else ""
        if line.strip() and not para and _SETEXT.match(next_line) and len(next_line) >= 3:
            flush(line_start)
            set_heading(1 if next_line.startswith("=") else 2, line)
            continue
        if _SETEXT.match(line) and not para and blocks and len(line) >= 3:
            continue  # the underline of a setext heading handled above
        if not line.strip():
            flush(line_start)
            continue
        if not para:
            para_start = line_start
        para.append(line)
    flush(pos)
    return blocks


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def _hard_split(text: str, limit: int) -> list[str]:
    """Split at the last space before `limit` (or at `limit` for text without spaces)."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", limit // 2, limit)
        cut = cut if cut > 0 else limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return pieces


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    start: int
    end: int
    paragraph: int  # units of one paragraph are joined with a space, paragraphs with a blank line


def _units(block: Block, paragraph: int, limit: int) -> list[_Unit]:
    """A paragraph as pieces of at most `limit` chars: whole, else sentences, else hard splits."""
    if len(block.text) <= limit:
        return [_Unit(block.text, block.start, block.end, paragraph)]
    pieces: list[str] = []
    for sentence in split_sentences(block.text):
        pieces.extend(_hard_split(sentence, limit) if len(sentence) > limit else [sentence])
    units: list[_Unit] = []
    cursor = 0
    for piece in pieces:
        found = block.text.find(piece, cursor)
        offset = found if found >= 0 else cursor
        cursor = offset + len(piece)
        units.append(_Unit(piece, block.start + offset, block.start + cursor, paragraph))
    return units


def _join(units: list[_Unit]) -> str:
    out: list[str] = []
    for i, unit in enumerate(units):
        if i:
            out.append(" " if unit.paragraph == units[i - 1].paragraph else "\n\n")
        out.append(unit.text)
    return "".join(out)


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The last units of a chunk that fit in `overlap` characters."""
    tail: list[_Unit] = []
    size = 0
    for unit in reversed(units):
        if size + len(unit.text) > overlap:
            break
        tail.insert(0, unit)
        size += len(unit.text) + 1
    return tail


def chunk_text(
    document_id: str, text: str, *, chunk_chars: int = 800, overlap: int = 120
) -> list[Chunk]:
    """Chunks of `text` (markdown or plain) with heading paths, overlap and stable ids."""
    if chunk_chars < 50:
        raise ValueError("chunk_chars must be at least 50")
    overlap = max(0, min(overlap, chunk_chars // 2))
    sections: list[tuple[str, list[Block]]] = []
    for block in split_blocks(text):
        if sections and sections[-1][0] == block.heading:
            sections[-1][1].append(block)
        else:
            sections.append((block.heading, [block]))

    pieces: list[tuple[str, list[_Unit]]] = []
    paragraph = 0
    for heading, blocks in sections:
        current: list[_Unit] = []
        size = 0
        fresh = 0  # units in `current` that are not overlap from the previous chunk
        for block in blocks:
            paragraph += 1
            for unit in _units(block, paragraph, chunk_chars):
                if fresh and size + len(unit.text) + 2 > chunk_chars:
                    pieces.append((heading, current))
                    current = _tail(current, overlap)
                    size = sum(len(u.text) + 2 for u in current)
                    fresh = 0
                current.append(unit)
                size += len(unit.text) + 2
                fresh += 1
        if fresh:
            pieces.append((heading, current))

    chunks: list[Chunk] = []
    seen: dict[tuple[str, str], int] = {}
    for ordinal, (heading, units) in enumerate(pieces):
        body = _join(units)
        repeat = seen.get((heading, body), 0)
        seen[(heading, body)] = repeat + 1
        chunks.append(
            Chunk(
                id=_chunk_id(document_id, heading, body, repeat),
                document_id=document_id,
                ordinal=ordinal,
                text=body,
                heading=heading,
                start=units[0].start,
                end=units[-1].end,
            )
        )
    return chunks
