"""Stop strings over streamed text (pure): the answer ends before the first stop string, also
when one arrives split over several tokens.

Text that could be the start of a stop string is held back until the next piece says whether
it is one; what is surely not is let out at once. Used by the local engine, whose tokens
arrive one at a time (a hosted provider stops on its own side).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    __slots__ = ("_held", "_stops", "stopped")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that may go out now; after a stop string (`stopped`), nothing more."""
        if self.stopped:
            return ""
        buf = self._held + text
        cut = self._first(buf)
        keep = self._partial(buf)
        start = len(buf) - keep  # where a stop string may be starting, not yet complete
        if cut >= 0 and (keep == 0 or cut <= start):
            self.stopped = True
            self._held = ""
            return buf[:cut]
        self._held = buf[start:]
        return buf[:start]

    def flush(self) -> str:
        """What is held back when the text ends (up to a stop string it holds)."""
        held, self._held = self._held, ""
        cut = self._first(held)
        return held if cut < 0 else held[:cut]

    def _first(self, buf: str) -> int:
        """Where the earliest complete stop string begins (-1: none)."""
        return min((i for i in (buf.find(s) for s in self._stops) if i >= 0), default=-1)

    def _partial(self, buf: str) -> int:
        """The length of the longest end of `buf` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buf)), longest, -1):
                if buf.endswith(stop[:n]):
                    longest = n
                    break
        return longest
