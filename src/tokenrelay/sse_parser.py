"""An incremental Server-Sent Events parser, pure and transport-free (WHATWG HTML §9.2.6).

Feed it bytes as they arrive, in chunks of any size (split anywhere, even inside a UTF-8
character or between `\\r` and `\\n`); it returns the events each chunk completes.

- Lines end with `\\r\\n`, `\\n` or `\\r`; a leading UTF-8 BOM is skipped.
- `field: value` (one space after the colon is dropped), `field` alone (empty value),
  `: comment` (counted in `comments`, never an event).
- `data` lines are joined with `\\n`; a blank line dispatches the event if it has data.
- `id` sets the last event id, which persists into later events (an `id` holding NUL is
  ignored); `retry` sets the reconnection delay when it is all ASCII digits.
- Bytes that are not UTF-8 become U+FFFD, as browsers do.
- A stream that ends without a blank line drops its unfinished event, as browsers do.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_LINE_CHARS = 16 * 1024 * 1024


class SSEParseError(ValueError):
    """The stream broke a limit of the parser (not the SSE grammar, which accepts anything)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str = ""  # the last event id in force when this event was dispatched
    retry: int | None = None  # the reconnection delay in force, in ms (None: never set)


class SSEParser:
    def __init__(self, *, max_line_chars: int = DEFAULT_MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_line = max_line_chars
        self._partial: list[str] = []  # the current line, not yet ended
        self._partial_len = 0
        self._after_cr = False  # the last chunk ended in '\r': a leading '\n' is its pair
        self._started = False  # the BOM check is done
        self._data: list[str] = []
        self._event = ""
        self._has_data = False
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`."""
        return self.feed_text(self._decoder.decode(chunk))

    def feed_text(self, text: str) -> list[SSEEvent]:
        """Like `feed`, for text already decoded."""
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._after_cr and text:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            self._partial.append(text[start : match.start()])
            line = "".join(self._partial)
            self._partial.clear()
            self._partial_len = 0
            start = match.end()
            event = self._line(line)
            if event is not None:
                events.append(event)
        rest = text[start:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > self._max_line:
                raise SSEParseError(
                    f"an SSE line is longer than {self._max_line} characters; "
                    "raise max_line_chars if this server really sends such lines"
                )
        elif text.endswith("\r"):
            self._after_cr = True
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: flush the decoder; an unfinished event is dropped (nothing returned
        unless the final bytes complete a line that ends an event)."""
        tail = self._decoder.decode(b"", final=True)
        events = self.feed_text(tail) if tail else []
        self._partial.clear()
        self._partial_len = 0
        self._reset_event()
        return events

    def _reset_event(self) -> None:
        self._data.clear()
        self._event = ""
        self._has_data = False

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_data:
            self._reset_event()
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self.last_event_id,
            retry=self.retry,
        )
        self._reset_event()
        return event


def parse_sse(raw: bytes | str) -> list[SSEEvent]:
    """Every complete event of a whole SSE body."""
    parser = SSEParser()
    events = parser.feed(raw) if isinstance(raw, bytes) else parser.feed_text(raw)
    return events + parser.close()
