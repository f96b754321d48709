"""Which language to answer in: `options.locale`, then Accept-Language, then the setting.

Pure functions of the header and the supported languages; a language tag matches by its
primary subtag (`ko-KR` → `ko`), case-insensitively. Nothing supported: English.
"""

from __future__ import annotations

import functools

from tokenrelay.i18n.catalogue import DEFAULT_LOCALE, supported_locales

_MAX_HEADER = 512  # longer headers are cut: a language list is short


def match_locale(tag: str | None, supported: frozenset[str] | None = None) -> str | None:
    """The supported language of one tag (`ko`, `ko-KR`, `KO_kr`), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in (supported or supported_locales()) else None


@functools.lru_cache(maxsize=256)
def parse_accept_language(header: str) -> tuple[str, ...]:
    """The header's language tags, most preferred first (q=0 left out, ties in order)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:_MAX_HEADER].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag))
    return tuple(tag for _, _, tag in sorted(ranked))


def choose_locale(
    option: str | None = None, accept_language: str | None = None, setting: str | None = None
) -> str:
    """The first supported of: the request's option, the header's tags, the setting; else
    English."""
    supported = supported_locales()
    tags = [option, *parse_accept_language(accept_language or ""), setting]
    for tag in tags:
        found = match_locale(tag, supported)
        if found is not None:
            return found
    return DEFAULT_LOCALE
