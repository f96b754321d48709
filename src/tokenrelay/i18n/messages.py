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

    A `Msg` is formatted from its catalogue entry, its params localized too; a plain `str`
    is looked up as a msgid as it is (a constant message from code that does not mark its
    own) and stays as it is when the catalogue does not have it."""
    lang = locale or current_locale()
    if lang == DEFAULT_LOCALE and not isinstance(text, Msg):
        return text
    catalogue = translation(lang)
    if not isinstance(text, Msg):
        return _localize_plain(text, catalogue)
    if lang == DEFAULT_LOCALE and not any(isinstance(v, Msg) for v in text.params.values()):
        return str.__str__(text)
    params = {k: localize(v, lang) if isinstance(v, Msg) else v for k, v in text.params.items()}
    template = catalogue.gettext(text.msgid)
    try:
        return template.format(**params) if params else template
    except (KeyError, IndexError, ValueError):  # a broken translation: the English one
        return text.msgid.format(**params)


def _localize_plain(text: str, catalogue: Any) -> str:
    if not text:
        return text
    found: str = catalogue.gettext(text)
    if found is not text and found != text:
        return found
    from tokenrelay.i18n.external import match_template, plain_fields

    matched = match_template(text)
    if matched is None:
        return text
    msgid, values = matched
    translated: str = catalogue.gettext(msgid)
    return plain_fields(translated).format(**values) if translated != msgid else text
