"""Ids: 32 hex digits, time first, never repeated, across threads and across a fork."""

from __future__ import annotations

import os
import re
import threading
import time

from tokenrelay.sessions.base import _RandomIds, new_id


def test_ids_are_128_bit_hex_and_unique_past_a_batch() -> None:
    ids = [new_id() for _ in range(3 * _RandomIds.BATCH + 7)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_ids_start_with_the_time_so_later_ids_sort_after() -> None:
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) < int(second[:12], 16) <= after
    assert first < second  # B-tree keys: a new row's index entry goes at the end


def test_threads_never_get_the_same_id() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in per_thread for i in out]
    assert len(set(every)) == len(every) == 16_000


def test_a_forked_child_does_not_repeat_the_parents_next_ids() -> None:
    new_id()  # the batch holds unused ids now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids, then leave at once
        os.close(read)
        os.write(write, "".join(new_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = "".join(new_id() for _ in range(4))
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_ids = {parent[i : i + 32] for i in range(0, len(parent), 32)}
    assert len(child_ids) == 4
    assert not child_ids & parent_ids
