"""`tokenrelay serve` tunes the garbage collector for many open streams (see serve.tune_gc)
and the GIL for the session store's thread (serve.tune_gil)."""

from __future__ import annotations

import gc
import sys

from tokenrelay.config import Settings
from tokenrelay.server.serve import SWITCH_INTERVAL_S, tune_gc, tune_gil


def test_tune_gc_sets_the_threshold_and_freezes_start_up_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before  # 0 keeps Python's default
        tune_gc(12_345)
        young, older, oldest = gc.get_threshold()
        assert young == 12_345
        # the walks over every open stream are rare; a full one comes as often as before
        assert older >= 1_000 and older * oldest == 5_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_default_is_tuned() -> None:
    # young collections 7x rarer than Python's, but each short: a collection stops every
    # stream at once, and at 50,000 one took 31 ms on the benchmark VM (findings item 22)
    assert Settings().gc_threshold == 5_000


def test_serve_lets_other_threads_have_the_gil_sooner() -> None:
    before = sys.getswitchinterval()
    try:
        tune_gil()
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S < before
    finally:
        sys.setswitchinterval(before)
