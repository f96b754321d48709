"""The compiled gettext catalogues under `locales/<lang>/LC_MESSAGES/tokenrelay.mo`.

English is the language of the code (the msgids), so it needs no catalogue; every other
language is one `.po` file, compiled to `.mo` by `scripts/i18n.py compile`.
"""

from __future__ import annotations

import functools
import gettext
from importlib.resources import files
from pathlib import Path

DOMAIN = "tokenrelay"
DEFAULT_LOCALE = "en"
LOCALE_DIR = Path(str(files("tokenrelay") / "locales"))


@functools.cache
def supported_locales() -> frozenset[str]:
    """English, and every language with a compiled catalogue."""
    found = {
        path.parent.parent.name
        for path in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")
        if path.is_file()
    }
    return frozenset({DEFAULT_LOCALE, *found})


@functools.cache
def translation(locale: str) -> gettext.NullTranslations:
    """The catalogue of `locale`; English (and anything unknown) translates to itself."""
    if locale == DEFAULT_LOCALE or locale not in supported_locales():
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[locale])
