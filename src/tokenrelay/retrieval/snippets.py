"""The short passage shown in a `sources` event: the sentences that best match the query. Pure."""

from __future__ import annotations

from tokenrelay.retrieval.analysis import analyze
from tokenrelay.retrieval.chunking import split_sentences


def make_snippet(text: str, terms: list[str] | set[str], width: int = 240) -> str:
    """The best-matching sentence of `text`, widened with its neighbours up to `width` chars."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    sentences = split_sentences(flat) or [flat]
    wanted = set(terms)
    scores = [len(wanted.intersection(analyze(s))) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    lo = hi = best
    size = len(sentences[best])
    while True:
        grew = False
        if hi + 1 < len(sentences) and size + len(sentences[hi + 1]) + 1 <= width:
            hi += 1
            size += len(sentences[hi]) + 1
            grew = True
        if lo > 0 and size + len(sentences[lo - 1]) + 1 <= width:
            lo -= 1
            size += len(sentences[lo]) + 1
            grew = True
        if not grew:
            break
    snippet = " ".join(sentences[lo : hi + 1])
    if len(snippet) > width:
        cut = snippet.rfind(" ", 0, width - 1)
        snippet = snippet[: cut if cut > width // 2 else width - 1]
    prefix = "…" if lo > 0 else ""
    suffix = (
        "…"
        if hi < len(sentences) - 1 or len(snippet) < len(" ".join(sentences[lo : hi + 1]))
        else ""
    )
    return f"{prefix}{snippet}{suffix}"
