"""The retrieval step of the chat pipeline: search the user's documents for this turn."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from tokenrelay.pipelines.needs import PipelineServices
from tokenrelay.retrieval.hybrid import RetrievalMode, search_with_mode
from tokenrelay.retrieval.owned import scoped_store
from tokenrelay.retrieval.prompting import build_system_prompt, sources_payload
from tokenrelay.retrieval.query import expand_query
from tokenrelay.sessions.base import StoredMessage

logger = logging.getLogger("tokenrelay.retrieval")


@dataclass(frozen=True)
class RagRequest:
    top_k: int
    min_score: float
    mode: RetrievalMode | None = None  # None: settings.retrieval_mode


@dataclass(frozen=True)
class Retrieved:
    hits: list[Any]  # retrieval.base.SearchHit
    sources: list[dict[str, Any]]  # the `documents` of the sources event
    system_prompt: str
    counts: dict[str, Any] | None = None  # the `retrieval` of the sources event (hybrid.py)


async def retrieve(
    services: PipelineServices,
    question: str,
    history: list[StoredMessage],
    rag: RagRequest,
    *,
    owner: str | None = None,
    system: str | None = None,
) -> Retrieved | None:
    """Search for the question (expanded from the last turns for follow-ups).

    None when there is no document store or the search failed: the answer then goes on without
    documents, never a crash. With `owner` (API keys on) only that key's documents are searched.
    `system`: the turn's own system prompt, which the grounding instructions are added to.
    """
    store = services.documents
    if store is None:
        return None

    store = scoped_store(store, owner)  # with API keys on: only the caller's documents

    turns: list[tuple[str, str]] = [
        (m.role, m.content) for m in history if m.role in ("user", "assistant")
    ]
    query = expand_query(question, turns)
    started = time.monotonic()
    try:
        found = await search_with_mode(store, query, rag.top_k, rag.min_score, rag.mode)
    except Exception:
        logger.exception("document search failed")
        return None
    finally:
        services.metrics.retrieval_latency.observe(time.monotonic() - started)
    hits = found.hits
    return Retrieved(
        hits=list(hits),
        sources=sources_payload(hits),
        system_prompt=build_system_prompt(system or services.settings.system_prompt, hits),
        counts=found.counts(),
    )
