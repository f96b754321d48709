"""BM25 over `rag_postings` (the PostgreSQL store, postgres.py): writing a chunk's postings and
ranking the chunks for a query's terms, in SQL.

One row per (term, chunk): the term's weighted frequency in the chunk (head x 2 + body x 1, as
bm25.py counts) and the chunk's length in terms; the primary key (term, seq) INCLUDE (tf, len)
serves a term's postings by an index-only scan. Ranking follows pruning.py: the rarest terms,
within the postings budget, score every chunk that holds them in one aggregate (the scores are
FTS5's bm25(): the idf of each term is computed here from `rag_terms` and passed in); the
frequent terms then add their share to the best `CANDIDATES` chunks by (term, chunk) point
look-ups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tokenrelay.retrieval.bm25 import K1, B, idf
from tokenrelay.retrieval.pruning import POSTINGS_BUDGET, plan_query

Connection = Any  # asyncpg.Connection

CANDIDATES = 50  # chunks a bounded search rescores with the frequent terms (as SQLite's)
HEAD_WEIGHT = 2
BODY_WEIGHT = 1


def postings(head: Sequence[str], body: Sequence[str]) -> dict[str, int]:
    """term -> weighted frequency (head x 2 + body x 1) in one chunk, as bm25.py counts it."""
    tf: Counter[str] = Counter()
    for term in head:
        tf[term] += HEAD_WEIGHT
    for term in body:
        tf[term] += BODY_WEIGHT
    return dict(tf)


async def insert_postings(
    conn: Connection, seqs: Sequence[int], analysed: Sequence[tuple[list[str], list[str]]]
) -> int:
    """Insert the chunks' postings; the number of rows."""
    terms: list[str] = []
    at: list[int] = []
    tfs: list[int] = []
    lens: list[int] = []
    for seq, (head, body) in zip(seqs, analysed, strict=True):
        length = len(head) + len(body)
        for term, tf in postings(head, body).items():
            terms.append(term)
            at.append(seq)
            tfs.append(tf)
            lens.append(length)
    if terms:
        await conn.execute(
            "INSERT INTO rag_postings (term, seq, tf, len)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[])",
            terms,
            at,
            tfs,
            lens,
        )
    return len(terms)


# BM25 of each chunk over the given terms: sum of idf x (k1 + 1) x tf / (tf + k1 x (1 - b + b x
# len / avg_len)), as bm25.py; $2 carries idf x (k1 + 1), $3..$5 are k1, 1 - b, b / avg_len
_TERM = "q.w * p.tf / (p.tf + $3::float8 * ($4::float8 + $5::float8 * p.len))"
_BM25 = f"sum({_TERM})"
_SCORE_SQL = f"""
    SELECT p.seq, {_BM25} AS score
    FROM unnest($1::text[], $2::float8[]) AS q(term, w)
    JOIN rag_postings p ON p.term = q.term
    GROUP BY p.seq ORDER BY score DESC, p.seq LIMIT $6
"""
_SCORE_ONE_SQL = f"""
    SELECT p.seq, {_TERM} AS score
    FROM unnest($1::text[], $2::float8[]) AS q(term, w)
    JOIN rag_postings p ON p.term = q.term
    ORDER BY score DESC, p.seq LIMIT $6
"""
_RESCORE_SQL = f"""
    SELECT p.seq, {_BM25} AS score
    FROM unnest($1::text[], $2::float8[], $6::bigint[]) AS q(term, w, seq)
    JOIN rag_postings p ON p.term = q.term AND p.seq = q.seq
    GROUP BY p.seq
"""


async def rank(
    conn: Connection, terms: Sequence[str], limit: int, *, budget: int = POSTINGS_BUDGET
) -> list[tuple[int, float]]:
    """(seq, BM25) of the best `limit` chunks, best first; bounded as pruning.py says."""
    row = await conn.fetchrow(
        "SELECT s.chunks, s.terms, (SELECT array_agg(t.term) FROM rag_terms t"
        " WHERE t.term = ANY($1::text[])) AS names, (SELECT array_agg(t.df) FROM rag_terms t"
        " WHERE t.term = ANY($1::text[])) AS dfs FROM rag_stats s WHERE s.id = 1",
        terms,
    )
    if row is None or not row["chunks"]:
        return []
    n_chunks = int(row["chunks"])
    avg_len = int(row["terms"]) / n_chunks
    df = dict(zip(row["names"] or [], row["dfs"] or [], strict=True))
    plan = plan_query(terms, df, budget=budget)
    if not plan.select:
        return []

    def weights(chosen: Sequence[str]) -> list[float]:
        return [idf(n_chunks, df[t]) * (K1 + 1) for t in chosen]

    norm = (K1, 1 - B, B / avg_len if avg_len > 0 else 0.0)
    wanted = limit if plan.exhaustive else max(CANDIDATES, 2 * limit)
    sql = _SCORE_ONE_SQL if len(plan.select) == 1 else _SCORE_SQL  # no aggregate for one
    ranked = await conn.fetch(sql, list(plan.select), weights(plan.select), *norm, wanted)
    scores = {r["seq"]: float(r["score"]) for r in ranked}
    if plan.score_only and scores:
        # every (frequent term, candidate) pair: point look-ups on the primary key
        pairs = [
            (t, w, seq)
            for t, w in zip(plan.score_only, weights(plan.score_only), strict=True)
            for seq in scores
        ]
        extra = await conn.fetch(
            _RESCORE_SQL,
            [t for t, _, _ in pairs],
            [w for _, w, _ in pairs],
            *norm,
            [q for _, _, q in pairs],
        )
        for r in extra:
            scores[r["seq"]] += float(r["score"])
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return order[:limit]
