"""Planner statistics and the visibility map of PostgreSQL's search tables, kept fresh by the
store itself after bulk writes.

BM25 over `rag_postings` (pg_postings.py) is planned from the tables' statistics and answered
from the index alone only where the visibility map says the rows are visible to all. Right
after a bulk ingest neither holds until autovacuum runs, and a server may run it late or not at
all (`autovacuum = off` on the benchmark machine): there, lexical search at 100,000 chunks took
559 ms p50 after the load, 36 ms after `ANALYZE` and 8.8 ms after `VACUUM`
(bench/postgres_speed.py, docs/benchmarks.md). So the store counts the posting rows it writes
and deletes and, past a threshold (`max(min_rows, fraction x the table at the last run)`),
runs `VACUUM (ANALYZE)` of the search tables in the background, one run at a time, never
holding a write, once the writes have paused for `QUIET_S` (a bulk load is vacuumed once, at
its end, not many times while it grows); a store opened on tables never analysed runs it once
at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

logger = logging.getLogger("tokenrelay.retrieval")

Pool = Any  # asyncpg.Pool (asyncpg ships no type information)

TABLES = ("rag_postings", "rag_terms", "rag_chunks", "rag_documents")
MIN_ROWS = 50_000
FRACTION = 0.2
QUIET_S = 1.0


def due(written: int, base: float, *, min_rows: int = MIN_ROWS, fraction: float = FRACTION) -> bool:
    """Whether `written` posting rows since the last run call for another (pure)."""
    return written >= max(min_rows, fraction * base)


class Upkeep:
    """Counts posting rows written; runs `VACUUM (ANALYZE)` when `due`, in the background."""

    def __init__(
        self,
        pool: Pool,
        schema: str,
        *,
        min_rows: int = MIN_ROWS,
        fraction: float = FRACTION,
        quiet_s: float = QUIET_S,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._min_rows = min_rows
        self._fraction = fraction
        self._quiet_s = quiet_s
        self._last_write = 0.0
        self._written = 0
        self._base = 0.0  # rag_postings rows at the last run (the planner's estimate)
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.runs = 0

    async def start(self) -> None:
        """Run now, in the background, when the postings changed enough since their last
        analysis (never analysed, or loaded by another process, e.g. `tokenrelay ingest`)."""
        row = await self._pool.fetchrow(
            "SELECT s.n_live_tup, s.n_mod_since_analyze FROM pg_stat_user_tables s"
            " WHERE s.schemaname = $1 AND s.relname = 'rag_postings'",
            self._schema,
        )
        if row is None or not row["n_mod_since_analyze"]:
            return
        changed, live = int(row["n_mod_since_analyze"]), int(row["n_live_tup"] or 0)
        if changed >= live or due(
            changed, live - changed, min_rows=self._min_rows, fraction=self._fraction
        ):
            self._launch()

    def wrote(self, rows: int) -> None:
        """After a committed write of `rows` posting rows (inserted plus deleted)."""
        self._written += rows
        self._last_write = time.monotonic()
        if self._task is None and due(
            self._written, self._base, min_rows=self._min_rows, fraction=self._fraction
        ):
            self._launch()

    def _launch(self) -> None:
        self._written = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        tables = ", ".join(f"{self._schema}.{t}" for t in TABLES)
        try:
            # writes still coming: vacuum once they pause (or at once when closing)
            while (wait := self._last_write + self._quiet_s - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
            self._written = 0
            started = time.perf_counter()
            async with self._pool.acquire() as conn:
                await conn.execute(f"VACUUM (ANALYZE) {tables}")
                base = await conn.fetchval(
                    "SELECT reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = $1 AND c.relname = 'rag_postings'",
                    self._schema,
                )
            self._base = max(float(base or 0), 0.0)
            self.runs += 1
            logger.info(
                "VACUUM (ANALYZE) of the search tables: %.1f s, %d postings",
                time.perf_counter() - started,
                int(self._base),
            )
        except Exception as e:  # upkeep must never fail a write or a search
            logger.warning("VACUUM (ANALYZE) of the search tables failed: %s", e)
        finally:
            self._task = None
        if due(self._written, self._base, min_rows=self._min_rows, fraction=self._fraction):
            self._launch()  # more was written while it ran

    async def idle(self) -> None:
        """Wait for the running upkeep, and any it started (tests, the CLI before exit)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self, wait_s: float = 30.0) -> None:
        """Finish a pending run (no more writes come, so at once), for at most `wait_s`."""
        task = self._task
        if task is None:
            return
        self._quiet_s = 0.0
        self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
