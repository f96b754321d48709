"""Which language: options.locale, then Accept-Language (q-values), then the setting."""

from __future__ import annotations

import pytest

from tokenrelay.i18n import choose_locale, localize, match_locale, tr
from tokenrelay.i18n.negotiate import parse_accept_language


@pytest.mark.parametrize(
    ("option", "header", "setting", "expected"),
    [
        ("ko", "en", "en", "ko"),
        ("ko-KR", None, "en", "ko"),
        ("fr", "ko-KR,ko;q=0.9", "en", "ko"),  # unsupported option: the header decides
        (None, "fr-CA, ko;q=0.8, en;q=0.5", "en", "ko"),
        (None, "en;q=0.4, ko;q=0.9", "en", "ko"),
        (None, "ko;q=0, en", "ko", "en"),
        (None, "fr, de", "ko", "ko"),  # nothing supported in the header: the setting
        (None, None, "xx", "en"),  # nothing supported at all: English
        (None, "*", None, "en"),
        (None, "ko;q=oops, en", None, "en"),
    ],
)
def test_choose_locale(
    option: str | None, header: str | None, setting: str | None, expected: str
) -> None:
    assert choose_locale(option, header, setting) == expected


def test_tags() -> None:
    assert match_locale("KO_kr") == "ko"
    assert match_locale("") is None
    assert parse_accept_language("a;q=0.1, b, c;q=0.5") == ("b", "c", "a")


def test_a_message_is_english_and_korean() -> None:
    message = tr("message is {length} characters long; the limit is {limit}", length=12, limit=10)
    assert message == "message is 12 characters long; the limit is 10"
    assert localize(message, "en") == message
    assert localize(message, "ko") == "메시지가 12자입니다. 최대 10자까지 보낼 수 있습니다"


def test_a_plain_text_is_not_ours_to_translate() -> None:
    """Every message of the code is marked where it is made; an unmarked `str` (a plugin's
    own text, an upstream's) stays as it is, even when it equals one of our message ids."""
    assert localize("the stream was cancelled", "ko") == "the stream was cancelled"
    assert localize(tr("the stream was cancelled"), "ko") == "스트림이 취소되었습니다"
    assert localize("a text no catalogue has", "ko") == "a text no catalogue has"
