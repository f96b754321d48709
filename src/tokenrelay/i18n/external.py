"""Messages for users raised by modules that do not mark their own with `tr` (the runner,
the stream logs, the idle watchdog in `streams/`), listed here so that the catalogues have
them. `localize` finds a constant one by its English text, and a formatted one through its
template in `TEMPLATES` (the values read back from the English text)."""

from __future__ import annotations

import functools
import re

from tokenrelay.i18n.messages import tr

CONSTANT = (
    tr("the stream was cancelled"),
    tr("send the message again to get a new answer"),
    tr("the connection was gone for too long, so the answer was stopped"),
    tr("this server is shutting down"),
    tr("reconnect with Last-Event-ID to resume, or resend the message"),
    tr("ask for a shorter answer"),
    tr("retry"),
    tr("the server generating this answer stopped before it finished"),
    tr("part of this answer is no longer available"),
    tr("send your message again"),
    tr("this answer cannot be followed right now"),
    tr("try again in a moment"),
    tr("the server cannot reach its shared stream log right now"),
    tr("start a new request; finished streams stay resumable for stream_ttl_s seconds"),
)

TEMPLATES = (
    tr("the answer took longer than the {seconds:g} s limit", seconds=0),
    tr("the model produced no output for {seconds:g} s", seconds=0),
    tr("stream {stream_id!r} is unknown or has expired", stream_id=""),
)

_FIELD = re.compile(r"\{(\w+)[^{}]*\}")


@functools.cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    found = []
    for message in TEMPLATES:
        parts = _FIELD.split(message.msgid)  # literal, name, literal, name, ..., literal
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
        )
        found.append((re.compile(f"^{regex}$", re.DOTALL), message.msgid))
    return tuple(found)


def match_template(text: str) -> tuple[str, dict[str, str]] | None:
    """(msgid, values as text) of the template `text` was formatted from, or None."""
    for pattern, msgid in _patterns():
        found = pattern.match(text)
        if found is not None:
            return msgid, found.groupdict()
    return None


def plain_fields(template: str) -> str:
    """`template` with its fields' conversions and format specs left out: the values read
    back by `match_template` are text already."""
    return _FIELD.sub(lambda m: "{" + m.group(1) + "}", template)
