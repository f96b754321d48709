"""A sqlite3 connection owned by one worker thread: a whole unit of work is one thread hop.

aiosqlite sends every `execute`, `fetchall` and `commit` to its thread separately, so a write
of one document cost about nine hops, each waiting for the event loop to be scheduled again
(slow on a busy machine). Here the caller hands over one plain function that does all of its
SQL (a batch of documents, or a search with its fetch) on the connection and returns Python
values. A function is a complete transaction: it commits or rolls back before it returns, so a
cancelled caller never leaves a transaction open.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class SqliteWorker:
    """`await worker.run(fn)` runs `fn(connection)` on the worker's own thread."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn

    @classmethod
    async def open(cls, path: str, *, name: str) -> SqliteWorker:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

        def connect() -> sqlite3.Connection:
            # autocommit mode: every function says BEGIN/COMMIT itself
            return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)

    async def close(self) -> None:
        try:
            await self.run(lambda conn: conn.close())
        finally:
            self._executor.shutdown(wait=False)


def write_transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """`body` inside BEGIN IMMEDIATE ... COMMIT (the write lock up front), rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
