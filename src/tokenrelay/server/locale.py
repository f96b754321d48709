"""The language of each request (docs/i18n.md): Accept-Language, else the `locale` setting.

A pure ASGI middleware that sets `i18n.current`'s context variable before anything below it
runs, so that the errors of the API keys, the limits, validation and the routes, and the
streams the request starts, are all in the client's language. A route that reads
`options.locale` sets it again (`use_request_locale`). The OpenAI API (`/v1`) stays in
English, as OpenAI's own error envelope is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.i18n import DEFAULT_LOCALE, choose_locale, match_locale, set_locale

OPENAI_PREFIX = "/v1"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class LocaleMiddleware:
    def __init__(self, app: ASGIApp, *, default: str = DEFAULT_LOCALE) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"):
                set_locale(DEFAULT_LOCALE)
            else:
                set_locale(choose_locale(None, header(scope, b"accept-language"), self.default))
        await self.app(scope, receive, send)


def use_request_locale(option: str | None) -> None:
    """A request's `options.locale`, when it names a supported language, wins over the
    header and the setting the middleware already chose from."""
    chosen = match_locale(option)
    if chosen is not None:
        set_locale(chosen)
