"""The stream context: all a pipeline gets of the stream it runs in, and its one output.

The runner (`streams/runner.py`) makes one for each stream and calls the pipeline with it. A
pipeline is an async function of the context (`Pipeline`): it `emit`s every event of the
stream as it happens and returns its `done` event, which the runner stores as the stream's one
terminal event (or an `error` instead, however the pipeline fails or is cancelled).

`emit` is the only way out of a pipeline, and it is the log's lane for this stream
(`StreamLog.lane`), called directly: a token is emitted as its JSON (`events.token_json`, a
`str`) and stored at once, one call per token; any other event (a wire event model) goes on
to the runner, which also notes what it logs at the end (`metadata`) and refuses terminal
events (those are the runner's to store).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias


class StreamContext:
    """One running stream, as its pipeline sees it (the runner's record of it is a subclass).

    - `emit(event)`: store one event of the stream now, never waiting: a token's JSON, or
      an event model;
    - `cancelled`: has the runner asked the stream to stop (a cancel, a disconnect, the
      deadline)? The pipeline's task is cancelled as well;
    - `generation_stopped()`: the pipeline's provider has stopped after a cancel;
    - `deadline`: the `time.monotonic()` at which the runner stops the stream;
    - `stream_id`.
    """

    __slots__ = ("deadline", "emit", "stream_id")

    def __init__(self, stream_id: str, deadline: float, emit: Callable[[Any], object]) -> None:
        self.stream_id = stream_id
        self.deadline = deadline
        self.emit = emit

    @property
    def cancelled(self) -> bool:
        return False

    def generation_stopped(self) -> None:
        """The cancel latency that counts ends here (storing the partial answer comes after)."""


Pipeline: TypeAlias = Callable[[StreamContext], Awaitable[object]]
"""What the runner runs: emits the stream's events, returns its terminal `done` event."""
