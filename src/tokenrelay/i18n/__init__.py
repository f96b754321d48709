"""Languages: messages marked in the code (`tr`), gettext catalogues, and the language of
the request or stream in progress (docs/i18n.md)."""

from tokenrelay.i18n.catalogue import DEFAULT_LOCALE, supported_locales
from tokenrelay.i18n.current import current_locale, set_locale
from tokenrelay.i18n.messages import Msg, localize, tr
from tokenrelay.i18n.negotiate import choose_locale, match_locale

__all__ = [
    "DEFAULT_LOCALE",
    "Msg",
    "choose_locale",
    "current_locale",
    "localize",
    "match_locale",
    "set_locale",
    "supported_locales",
    "tr",
]
