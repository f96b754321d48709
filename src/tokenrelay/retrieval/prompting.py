"""Prompt pieces for answers grounded in retrieved passages. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenrelay.retrieval.base import SearchHit

RAG_SYSTEM_INSTRUCTION = (
    "Answer using the numbered context passages below. After each statement that uses a "
    "passage, cite it as [n] with its number, e.g. [1] or [2][3]. If the context does not "
    "contain the answer, say that the documents do not cover it and then answer from general "
    "knowledge if you can, clearly marked as such. Answer in the language of the question."
)

NO_SOURCES_INSTRUCTION = (
    "No passage in the user's documents matched this question. Begin the answer by saying that "
    "the documents do not cover it, then answer from general knowledge if you can, and do not "
    "cite sources. Answer in the language of the question."
)

MAX_PASSAGE_CHARS = 1500


def format_context(hits: Sequence[SearchHit], max_chars: int = MAX_PASSAGE_CHARS) -> str:
    """Numbered passages [1]..[n] with their title and heading, best first."""
    blocks: list[str] = []
    for n, hit in enumerate(hits, start=1):
        where = hit.title if not hit.heading else f"{hit.title} — {hit.heading}"
        text = hit.text or hit.snippet
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "…"
        blocks.append(f"[{n}] {where}\n{text}")
    return "\n\n".join(blocks)


def build_system_prompt(base: str, hits: Sequence[SearchHit]) -> str:
    """The system prompt for a RAG turn: our base prompt + instruction + numbered context."""
    if not hits:
        return f"{base}\n\n{NO_SOURCES_INSTRUCTION}".strip()
    return f"{base}\n\n{RAG_SYSTEM_INSTRUCTION}\n\nContext:\n{format_context(hits)}".strip()


def sources_payload(hits: Sequence[SearchHit]) -> list[dict[str, Any]]:
    """`documents` of the `sources` event and `sources` of `done`: id, title, snippet, score,
    metadata (plus the citation number n)."""
    return [
        {**hit.to_source(), "metadata": {**hit.metadata, "n": n}} for n, hit in enumerate(hits, 1)
    ]
