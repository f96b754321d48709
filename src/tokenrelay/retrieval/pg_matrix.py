"""The exact vector search of PostgreSQL without pgvector: one model's vectors in this process.

Comparing the question with every stored vector in SQL (`unnest` over `real[]`) costs seconds
at 100,000 chunks. So, like the SQLite index, each process keeps the vectors of each (model,
dimension) in memory (`exact.VectorMatrix`: float32 rows and their int8 copy) and searches the
int8 copy with SIMD, rescoring the few candidates in float32 (exact; ~2 ms at 100,000 x 384
here, a quarter of the CPU of numpy's float32 product, which took 3-7 ms on a quiet machine and
10-12 ms under load), then reads the winners' rows by id.

Keeping the matrix fresh when other processes write (several replicas, `tokenrelay ingest`):
- every vector row has an increasing `rid`, and `rag_vector_sets` holds, per (model,
  dimension), the number of rows and a count of deleted rows; writers update it in the same
  transaction, under one advisory lock (vector_postgres.py), so rids become visible in order;
- before each search one small query reads that row; if it changed, the rows with a larger
  rid are appended, and when rows were deleted the ids still present are read (ids only) and
  the others dropped. All of it in one repeatable-read snapshot; if the counts still disagree,
  everything is loaded again.
Vectors are read by binary COPY of the `packed` column (big-endian float32 bytes): every row
has the same width, so numpy turns the bytes into the matrix without a Python object per row
or per float. (COPY of the `real[]` column costs the server a conversion per element: ~8 s
for 100,000 x 384 here, against well under a second.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenrelay.retrieval.exact import VectorMatrix

Connection = Any  # asyncpg.Connection
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_FILE_HEADER = len(_SIGNATURE) + 8  # signature, flags, header extension length (0)
_ROW_HEAD = 2 + 4 + 8 + 4  # field count; rid's length and value; the packed vector's length


def decode_copy(data: bytes, dim: int) -> tuple[Any, Any]:
    """A binary COPY of (rid bigint, packed bytea) rows -> (rids, float32 matrix).

    Every row has the same width, so the rows are one (n, width) byte matrix, and the vectors
    (big-endian float32, as float4send writes them) one slice of it.
    """
    width = _ROW_HEAD + 4 * dim
    body = len(data) - _FILE_HEADER - 2  # the trailer: a field count of -1
    if not data.startswith(_SIGNATURE) or body < 0 or body % width:
        raise ValueError(f"stored vectors are not all of dimension {dim}")
    rows = np.frombuffer(data, dtype=np.uint8, offset=_FILE_HEADER, count=body)
    rows = rows.reshape(body // width, width)
    head = rows[:, :_ROW_HEAD].copy()
    if len(head) and (
        np.any(head[:, 0:2].view(">i2") != 2) or np.any(head[:, 14:18].view(">i4") != 4 * dim)
    ):
        raise ValueError(f"stored vectors are not all of dimension {dim}")
    rids = head[:, 6:14].view(">i8").ravel().astype(np.int64)
    vectors = rows[:, _ROW_HEAD:].copy().view(">f4").astype(np.float32)
    return rids, vectors


class Matrix:
    """One (model, dimension)'s vectors (`exact.VectorMatrix`: rids, unit float32 rows and
    their int8 copy), replaced, never mutated."""

    def __init__(self, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim
        self.rows = VectorMatrix.empty(dim)
        self.signature: tuple[int, int] = (-1, -1)  # (rows, deletions) of rag_vector_sets
        self.lock = asyncio.Lock()

    @property
    def rids(self) -> Any:
        return self.rows.ids

    @property
    def last(self) -> int:
        return int(self.rids[-1]) if len(self.rids) else 0

    async def _rows(self, conn: Connection, after: int) -> tuple[Any, Any]:
        """The rows with a rid above `after`, by binary COPY (no Python object per row)."""
        parts: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            parts.append(chunk)

        await conn.copy_from_query(
            "SELECT rid, packed FROM rag_vectors WHERE model = $1 AND dim = $2 AND rid > $3"
            " ORDER BY rid",
            self.model,
            self.dim,
            after,
            output=sink,
            format="binary",
        )
        return decode_copy(b"".join(parts), self.dim)

    async def refresh(self, conn: Connection) -> None:
        """Catch up with the table (one round trip when nothing changed)."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(
                "SELECT rows, deletions FROM rag_vector_sets WHERE model = $1 AND dim = $2",
                self.model,
                self.dim,
            )
            signature = (int(row["rows"]), int(row["deletions"])) if row else (0, 0)
            if signature == self.signature:
                return
            rows, last = self.rows, self.last
            if signature[1] != self.signature[1] and len(rows):
                present = await conn.fetchval(
                    "SELECT array_agg(rid) FROM rag_vectors"
                    " WHERE model = $1 AND dim = $2 AND rid <= $3",
                    self.model,
                    self.dim,
                    last,
                )
                rows = rows.kept(np.isin(rows.ids, np.asarray(present or [], dtype=np.int64)))
            new_rids, new_vectors = await self._rows(conn, last)
            if len(rows) + len(new_rids) != signature[0]:  # not in step: load everything
                rows = VectorMatrix.of(*await self._rows(conn, 0))
            else:
                rows = rows.appended(new_rids, new_vectors)
            self.rows, self.signature = rows, signature

    def nearest(self, vector: Sequence[float], k: int) -> list[tuple[int, float]]:
        """(rid, cosine similarity) of the `k` nearest rows, best first."""
        return self.rows.nearest(vector, k)
