"""Stop strings over streamed text (providers/_stops.py), piece by piece."""

from __future__ import annotations

import pytest

from tokenrelay.providers._stops import StopScanner


def run(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    if not scanner.stopped:
        out.append(scanner.flush())
    return out, scanner.stopped


@pytest.mark.parametrize(
    ("pieces", "stops", "text"),
    [
        (["Hello", " wor", "ld"], ["world"], "Hello "),
        (["ab", "c", "END", "more"], ["END"], "abc"),
        (["a", "E", "N", "D", "b"], ["END"], "a"),
        (["aEN", "x", "END"], ["END"], "aENx"),
        (["one\n\n", "two"], ["\n\n"], "one"),
        (["no stop here"], ["zzz"], "no stop here"),
        (["x", "Us", "er:"], ["User:", "s"], "x"),  # the earliest stop wins
    ],
)
def test_text_before_the_first_stop_string(pieces: list[str], stops: list[str], text: str) -> None:
    out, _ = run(pieces, stops)
    assert "".join(out) == text


def test_text_that_is_surely_not_a_stop_goes_out_at_once() -> None:
    out, stopped = run(["Hel", "lo E", "N", "x"], ["END"])
    assert out == ["Hel", "lo ", "", "ENx", ""] and not stopped


def test_nothing_after_the_stop() -> None:
    scanner = StopScanner(["."])
    assert scanner.feed("a.b") == "a" and scanner.stopped
    assert scanner.feed("more") == "" and scanner.flush() == ""
