"""The stream context: all a pipeline gets of the stream it runs in, and its one output.

The runner (`streams/runner.py`) makes one for each stream and calls the pipeline with it. A
pipeline is an async function of the context (`Pipeline`): it `emit`s every event of the
stream as it happens and returns its `done` event, which the runner stores as the stream's one
terminal event (or an `error` instead, however the pipeline fails or is cancelled).

`emit` is the only way out of a pipeline. A token is emitted as its JSON (`events.token_json`,
a `str`) and goes straight into the log (`StreamLog.lane`, bound to this stream when the
runner made the context): one call per token, nothing yielded up through generator layers.
Any other event (a wire event model) goes to the runner's `_store`, which also notes what the
runner logs at the end (`metadata`) and refuses terminal events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias


class StreamContext:
    """One running stream, as its pipeline sees it (the runner's record of it is a subclass)."""

    __slots__ = ("_put", "deadline", "stream_id")

    def __init__(self, stream_id: str, deadline: float, put: Callable[[str], object]) -> None:
        self.stream_id = stream_id
        self.deadline = deadline  # time.monotonic() at which the runner stops the stream
        self._put = put

    def emit(self, event: object) -> None:
        """Store one event of the stream now (never waits): a token's JSON, or an event."""
        if type(event) is str:  # a token (`events.token_json`): the fast path, once per token
            self._put(event)
        else:
            self._store(event)

    def _store(self, event: object) -> None:
        raise NotImplementedError

    @property
    def cancelled(self) -> bool:
        """Has the runner asked this stream to stop (a cancel, a disconnect, the deadline)?"""
        raise NotImplementedError

    def generation_stopped(self) -> None:
        """The pipeline's provider has stopped after a cancel: the cancel latency that counts
        (storing the partial answer comes after)."""
        raise NotImplementedError


Pipeline: TypeAlias = Callable[[StreamContext], Awaitable[object]]
"""What the runner runs: emits the stream's events, returns its terminal `done` event."""
