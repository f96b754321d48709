"""The language of the request or stream in progress, as a context variable.

The locale middleware (`server/locale.py`) sets it for each request from Accept-Language
and the `locale` setting; a route that reads `options.locale` sets it again. A stream's task
is created by the runner inside the request, so it copies the request's context and keeps
its language for the whole stream, whatever the connection does later.
"""

from __future__ import annotations

from contextvars import ContextVar

from tokenrelay.i18n.catalogue import DEFAULT_LOCALE

_LOCALE: ContextVar[str] = ContextVar("tokenrelay_locale", default=DEFAULT_LOCALE)


def current_locale() -> str:
    return _LOCALE.get()


def set_locale(locale: str) -> None:
    """Set the language of what runs from here on in this context (a supported one)."""
    _LOCALE.set(locale)
