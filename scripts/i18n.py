"""The message catalogues: extract the messages, update the `.po` files, compile them.

    .venv/bin/python scripts/i18n.py update    # code → locales/tokenrelay.pot and every .po
    .venv/bin/python scripts/i18n.py compile   # every .po → its .mo and the chat page's JSON
    .venv/bin/python scripts/i18n.py check     # exit 1 when a catalogue is stale or incomplete

Messages are found in the code itself: every `tr("...")` call under src/tokenrelay (its first
argument must be a literal), every `t("...")` call in web/app.js and every element of
web/index.html with a `data-i18n` attribute (its text) or a `data-i18n-attr` list (those
attributes' values). The chat page's messages have the context `web`; the compiled JSON of a
language, `web/i18n-<lang>.json`, holds them for app.js. A new language: copy
locales/tokenrelay.pot to locales/<lang>/LC_MESSAGES/tokenrelay.po, translate it, compile.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tokenrelay"
sys.path.insert(0, str(ROOT / "src"))

from tokenrelay.i18n.po import Catalogue, Entry, compile_mo, format_po, parse_po  # noqa: E402

LOCALES = PACKAGE / "locales"
TEMPLATE = LOCALES / "tokenrelay.pot"
WEB = PACKAGE / "web"
WEB_CONTEXT = "web"
HEADER = "Content-Type: text/plain; charset=UTF-8\nLanguage: {lang}\n"
_JS_CALL = re.compile(r"""\bt\(\s*"((?:[^"\\\n]|\\.)*)"|\bt\(\s*'((?:[^'\\\n]|\\.)*)'""")
_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")


def python_messages() -> list[tuple[str, str]]:
    """(msgid, file) of every `tr(...)` call, in file and line order."""
    found: list[tuple[str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
            func = call.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name != "tr" or not call.args:
                continue
            first = call.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise SystemExit(f"{rel}:{call.lineno}: tr() needs a literal message id")
            found.append((first.value, rel))
    return found


class _Marked(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._stack: list[tuple[str, bool]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in (values.get("data-i18n-attr") or "").split(","):
            if name.strip() and values.get(name.strip()):
                self.found.append(str(values[name.strip()]))
        marked = "data-i18n" in values
        if tag not in ("input", "meta", "link", "br", "img"):
            self._stack.append((tag, marked))
            if marked:
                self._text = []

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1][0] == tag:
            _, marked = self._stack.pop()
            if marked:
                self.found.append(" ".join("".join(self._text).split()))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def web_messages() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(WEB.glob("*.js")):
        for match in _JS_CALL.finditer(path.read_text(encoding="utf-8")):
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            found.append((json.loads(f'"{raw}"'), f"tokenrelay/web/{path.name}"))
    parser = _Marked()
    parser.feed((WEB / "index.html").read_text(encoding="utf-8"))
    found += [(text, "tokenrelay/web/index.html") for text in parser.found]
    return found


def template() -> Catalogue:
    """Every message of the code, once each, with the files it comes from."""
    entries: dict[tuple[str | None, str], Entry] = {}
    sources = [(None, m, f) for m, f in python_messages()]
    sources += [(WEB_CONTEXT, m, f) for m, f in web_messages()]
    for context, msgid, where in sources:
        entry = entries.setdefault((context, msgid), Entry(msgid=msgid, msgctxt=context))
        if where not in entry.refs:
            entry.refs.append(where)
    return Catalogue(HEADER.format(lang=""), list(entries.values()))


def languages() -> list[str]:
    return sorted(p.parent.parent.name for p in LOCALES.glob("*/LC_MESSAGES/tokenrelay.po"))


def po_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / "tokenrelay.po"


def merged(lang: str, pot: Catalogue) -> Catalogue:
    """The language's catalogue with the template's entries: translations kept, new messages
    untranslated, messages gone from the code dropped."""
    old = parse_po(po_path(lang).read_text(encoding="utf-8"), str(po_path(lang))).by_key()
    entries = []
    for entry in pot.entries:
        kept = old.get(entry.key)
        entries.append(
            Entry(
                msgid=entry.msgid,
                msgctxt=entry.msgctxt,
                msgstr=kept.msgstr if kept else "",
                refs=list(entry.refs),
                flags=list(kept.flags) if kept else [],
                comments=list(kept.comments) if kept else [],
            )
        )
    return Catalogue(HEADER.format(lang=lang), entries)


def web_json(catalogue: Catalogue) -> str:
    texts = {
        e.msgid: e.msgstr for e in catalogue.entries if e.msgctxt == WEB_CONTEXT and e.translated
    }
    return json.dumps(texts, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def problems() -> list[str]:
    """What is stale or missing; empty when the catalogues match the code."""
    found: list[str] = []
    pot = template()
    if not TEMPLATE.is_file() or TEMPLATE.read_text(encoding="utf-8") != format_po(pot):
        found.append(f"{TEMPLATE.relative_to(ROOT)} is stale")
    for lang in languages():
        path = po_path(lang)
        text = path.read_text(encoding="utf-8")
        catalogue = parse_po(text, str(path))
        if text != format_po(merged(lang, pot)):
            found.append(f"{path.relative_to(ROOT)} does not match the code's messages")
        for entry in catalogue.entries:
            if not entry.translated:
                found.append(f"{lang}: {entry.msgid!r} is not translated")
            elif not placeholders(entry.msgstr) <= placeholders(entry.msgid):
                found.append(f"{lang}: {entry.msgid!r} has placeholders its msgid lacks")
        mo = path.with_suffix(".mo")
        if not mo.is_file() or mo.read_bytes() != compile_mo(catalogue):
            found.append(f"{mo.relative_to(ROOT)} is not compiled from its .po")
        page = WEB / f"i18n-{lang}.json"
        if not page.is_file() or page.read_text(encoding="utf-8") != web_json(catalogue):
            found.append(f"{page.relative_to(ROOT)} is not compiled from its .po")
    return found


def update() -> None:
    pot = template()
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(format_po(pot), encoding="utf-8")
    for lang in languages():
        po_path(lang).write_text(format_po(merged(lang, pot)), encoding="utf-8")


def compile_all() -> None:
    for lang in languages():
        path = po_path(lang)
        catalogue = parse_po(path.read_text(encoding="utf-8"), str(path))
        path.with_suffix(".mo").write_bytes(compile_mo(catalogue))
        (WEB / f"i18n-{lang}.json").write_text(web_json(catalogue), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["update", "compile", "check"])
    command = parser.parse_args().command
    if command == "update":
        update()
    elif command == "compile":
        compile_all()
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found and command == "check" else 0


if __name__ == "__main__":
    raise SystemExit(main())
