"""Translatable messages: `tr(msgid, **params)` marks a message and keeps its id and params.

A `Msg` is the message formatted in English, as a `str`, so that logs, exceptions and code
that only needs English keep working unchanged; it also remembers its `msgid` and `params`,
so that `localize` can format it again from the catalogue of another language. The msgid is
the English text with `{name}` placeholders (str.format); `scripts/i18n.py` extracts every
`tr("...")` call into the catalogues.
"""

from __future__ import annotations

from typing import Any

from tokenrelay.i18n.catalogue import DEFAULT_LOCALE, translation
from tokenrelay.i18n.current import current_locale


class Msg(str):
    """A message in English, that knows its catalogue id and its parameters."""

    __slots__ = ("msgid", "params")
    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, params: dict[str, Any]) -> Msg:
        self = super().__new__(cls, msgid.format(**params) if params else msgid)
        self.msgid = msgid
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep the id
        return (Msg, (self.msgid, self.params))


def tr(msgid: str, /, **params: Any) -> Msg:
    """Mark `msgid` (a literal: the extractor reads it) as a message for users."""
    return Msg(msgid, params)


def localize(text: str, locale: str | None = None) -> str:
    """`text` in `locale` (default: the current one, `current.current_locale`).

    A `Msg` is formatted from its catalogue entry, its params localized too. A plain `str`
    is not ours to translate (a tool plugin's own text, an upstream's message) and stays as
    it is: every message of this code is marked with `tr` where it is made."""
    if not isinstance(text, Msg):
        return text
    lang = locale or current_locale()
    if lang == DEFAULT_LOCALE and not any(isinstance(v, Msg) for v in text.params.values()):
        return str.__str__(text)
    params = {k: localize(v, lang) if isinstance(v, Msg) else v for k, v in text.params.items()}
    template = translation(lang).gettext(text.msgid)
    try:
        return template.format(**params) if params else template
    except (KeyError, IndexError, ValueError):  # a broken translation: the English one
        return text.msgid.format(**params)
