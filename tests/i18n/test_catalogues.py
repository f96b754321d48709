"""The catalogues match the code: every message the code marks (`tr`, the chat page's `t`
and `data-i18n`) is in the template and translated in every language, with the same
placeholders; the compiled `.mo` and the page's JSON are compiled from the `.po` as it is
now; and no message for users gives operator advice."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from tokenrelay.i18n.po import Catalogue, Entry, compile_mo, format_po, parse_po

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_script", ROOT / "scripts" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


def test_the_catalogues_match_the_code() -> None:
    assert SCRIPT.problems() == [], (
        "run: .venv/bin/python scripts/i18n.py update, translate, then scripts/i18n.py compile"
    )


def test_there_is_a_korean_catalogue() -> None:
    assert "ko" in SCRIPT.languages()


def test_a_message_missing_from_a_catalogue_is_found(tmp_path: Path) -> None:
    """The check above can fail: a template without one of the code's messages is stale."""
    pot = SCRIPT.template()
    shorter = Catalogue(pot.header, pot.entries[1:])
    assert format_po(shorter) != format_po(pot)
    ko = SCRIPT.merged("ko", pot)
    ko.entries[0].msgstr = ""
    assert not ko.entries[0].translated


# what an operator does, never an end user: env vars, installs, the server's log
OPERATOR_ADVICE = re.compile(
    r"TOKENRELAY_|\bset [A-Z_]{3,}|\bexport\b|\bunset\b|pip install|server log|\.env\b"
    r"|\braise [A-Za-z_]+_(s|ms|bytes|max|ctx)\b|systemctl|docker|/readyz|redis-server",
    re.IGNORECASE,
)


def _all_texts() -> list[tuple[str, str]]:
    found = [("en", e.msgid) for e in SCRIPT.template().entries]
    for lang in SCRIPT.languages():
        path = SCRIPT.po_path(lang)
        found += [(lang, e.msgstr) for e in parse_po(path.read_text(encoding="utf-8")).entries]
    return found


def test_no_message_for_users_gives_operator_advice() -> None:
    offenders = [(lang, text) for lang, text in _all_texts() if OPERATOR_ADVICE.search(text)]
    assert offenders == []


@pytest.mark.parametrize(
    "text",
    [
        "raise TOKENRELAY_DISCONNECT_GRACE_S",
        "set OPENAI_API_KEY and restart",
        "pip install 'tokenrelay[redis]'",
        "check the server log",
    ],
)
def test_the_operator_advice_scan_finds_advice(text: str) -> None:
    assert OPERATOR_ADVICE.search(text)


def test_po_round_trip_and_mo_read_by_gettext(tmp_path: Path) -> None:
    import gettext

    catalogue = Catalogue(
        "Content-Type: text/plain; charset=UTF-8\n",
        [
            Entry(msgid='a "quoted"\nline', msgstr="따옴표\n줄"),
            Entry(msgid="Send", msgstr="보내기", msgctxt="web"),
            Entry(msgid="fuzzy one", msgstr="흐림", flags=["fuzzy"]),
        ],
    )
    again = parse_po(format_po(catalogue))
    assert again.entries == catalogue.entries and again.header == catalogue.header
    folder = tmp_path / "xx" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "d.mo").write_bytes(compile_mo(catalogue))
    reading = gettext.translation("d", localedir=tmp_path, languages=["xx"])
    assert reading.gettext('a "quoted"\nline') == "따옴표\n줄"
    assert reading.pgettext("web", "Send") == "보내기"
    assert reading.gettext("fuzzy one") == "fuzzy one"  # fuzzy: not compiled
