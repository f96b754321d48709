"""Encoders: one wire format each, from the log's events to body bytes.

The stream log stores `(seq, type, json)` and knows no wire format; a reader
(`delivery/reader.py`) is given one encoder and writes whatever it makes. The native SSE frames
(`NativeEncoder`) are one encoder; OpenAI's Chat Completions chunks
(`server/openai_format.ChunkTranslator`) are another, and every other wire format of the same
streams is one more, never a second way through the reader.

An encoder is called with batches in order: `frames` with envelopes (what a reader takes from a
log), `pairs` with events as the memory log keeps them, a flat list of type and JSON strings
numbered from `first_seq` (what a pusher writes, without an envelope per event: the paced hot
path). Only the last event of a batch can be terminal, or a reader's own (`READER_SEQ`). A batch
that ends with the terminal event gets whatever the format ends a stream with.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import orjson

from tokenrelay.errors import ErrorCode, http_status_for
from tokenrelay.events import Envelope

PING_FRAME = b": ping\n\n"
"""A heartbeat: an SSE comment, which every SSE client skips (every format here is SSE)."""

_tuple_new = tuple.__new__  # a named tuple without its Python-level `__new__` (events.py)


class Encoder:
    """A wire format of our events. Subclasses write `frames`; `pairs` defaults to it."""

    __slots__ = ()  # a subclass with slots of its own makes no dict per response

    # True while the first frames are not made yet: the reader writes those itself (through
    # the response's `send`), not a pusher; a format whose first frame is special says so
    fresh = False

    def frames(self, events: Sequence[Envelope]) -> bytes:
        """The body bytes for a batch of events, in order (may be empty)."""
        raise NotImplementedError

    def pairs(self, first_seq: int, pairs: Sequence[str]) -> bytes:
        """`frames` of events kept as (type, JSON) string pairs, numbered from `first_seq`."""
        seqs = range(first_seq, first_seq + len(pairs) // 2)
        events = zip(seqs, pairs[0::2], pairs[1::2], strict=False)
        return self.frames(list(map(_tuple_new, repeat(Envelope), events)))

    def ping(self) -> bytes:
        return PING_FRAME

    def error_response(self, event: dict[str, Any]) -> tuple[int, bytes]:
        """An `error` event that ended the stream before its headers were sent, as this
        format's HTTP error: (status, JSON body). Ours: the event itself, with the code's
        status (docs/protocol.md)."""
        return error_status(event), orjson.dumps(event)


def error_status(event: dict[str, Any]) -> int:
    """The HTTP status of an `error` event's code (500 for a code this server does not know)."""
    try:
        return http_status_for(ErrorCode(str(event.get("code"))))
    except ValueError:
        return 500


class NativeEncoder(Encoder):
    """Our own SSE frames (docs/protocol.md): `id: <stream>:<seq>`, `event:` (unless the client
    asked for none), `data:`; the first frame also says `retry:`, when to reconnect."""

    __slots__ = ("_names", "_retry_ms", "_stream_id", "fresh")

    def __init__(self, stream_id: str, *, event_names: bool, retry_ms: int | None) -> None:
        self._stream_id = stream_id
        self._names = event_names
        self._retry_ms = retry_ms
        self.fresh = retry_ms is not None

    def frames(self, events: Sequence[Envelope]) -> bytes:
        if not events:
            return b""
        stream_id, names = self._stream_id, self._names
        if self.fresh:
            self.fresh = False
            first = encode_sse(stream_id, events[0], event_names=names, retry_ms=self._retry_ms)
            return first + encode_frames(stream_id, events[1:], event_names=names)
        return encode_frames(stream_id, events, event_names=names)

    def pairs(self, first_seq: int, pairs: Sequence[str]) -> bytes:
        if self.fresh:
            return super().pairs(first_seq, pairs)
        return encode_pairs(self._stream_id, first_seq, pairs, event_names=self._names)


def encode_sse(
    stream_id: str,
    env: Envelope,
    *,
    event_names: bool = True,
    retry_ms: int | None = None,
) -> bytes:
    """Encode one envelope as an SSE frame. JSON text never holds a raw newline, so one
    `data:` line always suffices and no payload can inject SSE fields."""
    if event_names and retry_ms is None and env.seq:  # the common case, one format per token
        return f"id: {stream_id}:{env.seq}\nevent: {env.type}\ndata: {env.data}\n\n".encode()
    parts = [f"id: {stream_id}:{env.seq}\n"] if env.seq else []  # READER_SEQ: no id
    if event_names:
        parts.append(f"event: {env.type}\n")
    parts.append(f"data: {env.data}\n")
    if retry_ms is not None:
        parts.append(f"retry: {retry_ms}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_frames(stream_id: str, envs: Sequence[Envelope], *, event_names: bool = True) -> bytes:
    """`encode_sse` of each envelope, joined (no `retry:` field): formatted as one string and
    encoded once, which is the reader's hot path. Only the last envelope can be a reader's own
    (`READER_SEQ`, terminal): that is checked once per batch, not per event."""
    if envs and not envs[-1].seq:
        return encode_frames(stream_id, envs[:-1], event_names=event_names) + encode_sse(
            stream_id, envs[-1], event_names=event_names
        )
    if event_names:
        text = "".join(
            [f"id: {stream_id}:{e.seq}\nevent: {e.type}\ndata: {e.data}\n\n" for e in envs]
        )
    else:
        text = "".join([f"id: {stream_id}:{e.seq}\ndata: {e.data}\n\n" for e in envs])
    return text.encode()


def encode_pairs(
    stream_id: str, first_seq: int, pairs: Sequence[str], *, event_names: bool = True
) -> bytes:
    """`encode_frames` of events kept as (type, JSON) string pairs, numbered from
    `first_seq`: the memory log's own storage (streams/log.py), encoded without an envelope
    per event. Each frame is one token on the paced hot path: that case is formatted alone."""
    if len(pairs) == 2:
        if event_names:
            return f"id: {stream_id}:{first_seq}\nevent: {pairs[0]}\ndata: {pairs[1]}\n\n".encode()
        return f"id: {stream_id}:{first_seq}\ndata: {pairs[1]}\n\n".encode()
    seqs = range(first_seq, first_seq + len(pairs) // 2)
    if event_names:
        text = "".join(
            [
                f"id: {stream_id}:{seq}\nevent: {kind}\ndata: {data}\n\n"
                for seq, kind, data in zip(seqs, pairs[0::2], pairs[1::2], strict=False)
            ]
        )
    else:
        text = "".join(
            [
                f"id: {stream_id}:{seq}\ndata: {data}\n\n"
                for seq, data in zip(seqs, pairs[1::2], strict=False)
            ]
        )
    return text.encode()
