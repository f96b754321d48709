"""gettext's `.po` files read and written, and compiled to `.mo` (pure).

The subset this project uses: `msgctxt`, `msgid`, `msgstr` (no plurals), `#:` references,
`#,` flags (a `fuzzy` entry counts as untranslated), the header entry. The `.mo` is the
format GNU gettext's `msgfmt` writes and Python's `gettext` module reads, with the entries
sorted so that the same catalogue always compiles to the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
_CONTEXT_SEP = "\x04"


@dataclass
class Entry:
    msgid: str
    msgstr: str = ""
    msgctxt: str | None = None
    refs: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.msgctxt, self.msgid)

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and "fuzzy" not in self.flags


@dataclass
class Catalogue:
    header: str
    entries: list[Entry]

    def by_key(self) -> dict[tuple[str | None, str], Entry]:
        return {e.key: e for e in self.entries}


def _unquote(text: str, where: str) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"{where}: expected a quoted string, got {text!r}")
    out: list[str] = []
    body = text[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_po(text: str, name: str = "<po>") -> Catalogue:
    """A `.po` file's entries; the header (the entry with an empty msgid) apart."""
    entries: list[Entry] = []
    header = ""
    fields: dict[str, str] = {}
    refs: list[str] = []
    flags: list[str] = []
    comments: list[str] = []
    last: str | None = None

    def flush() -> None:
        nonlocal header, fields, refs, flags, comments, last
        if "msgid" in fields:
            if fields["msgid"] == "" and "msgctxt" not in fields:
                header = fields.get("msgstr", "")
            else:
                entries.append(
                    Entry(
                        msgid=fields["msgid"],
                        msgstr=fields.get("msgstr", ""),
                        msgctxt=fields.get("msgctxt"),
                        refs=refs,
                        flags=flags,
                        comments=comments,
                    )
                )
        fields, refs, flags, comments, last = {}, [], [], [], None

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{name}:{number}"
        if not line:
            flush()
        elif line.startswith("#:"):
            if "msgid" in fields:
                flush()
            refs += line[2:].split()
        elif line.startswith("#,"):
            if "msgid" in fields:
                flush()
            flags += [f.strip() for f in line[2:].split(",") if f.strip()]
        elif line.startswith("#"):
            if "msgid" in fields:
                flush()
            comments.append(line[1:].strip())
        elif line.startswith('"'):
            if last is None:
                raise ValueError(f"{where}: a string continues no field")
            fields[last] += _unquote(line, where)
        else:
            keyword, _, rest = line.partition(" ")
            if keyword not in ("msgctxt", "msgid", "msgstr"):
                raise ValueError(f"{where}: unsupported keyword {keyword!r}")
            if keyword in fields or (keyword == "msgctxt" and "msgid" in fields):
                flush()
            fields[keyword] = _unquote(rest, where)
            last = keyword
    flush()
    seen: set[tuple[str | None, str]] = set()
    for entry in entries:
        if entry.key in seen:
            raise ValueError(f"{name}: msgid {entry.msgid!r} appears twice")
        seen.add(entry.key)
    return Catalogue(header, entries)


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _field(keyword: str, value: str) -> list[str]:
    if "\n" in value.rstrip("\n"):  # multi-line: one source line per line, as msgmerge does
        pieces = value.splitlines(keepends=True)
        return [f'{keyword} ""', *(_quote(p) for p in pieces)]
    return [f"{keyword} {_quote(value)}"]


def format_po(catalogue: Catalogue) -> str:
    """The catalogue as a `.po` file; `parse_po(format_po(c))` gives back `c`."""
    lines = [*_field("msgid", ""), *_field("msgstr", catalogue.header), ""]
    for entry in catalogue.entries:
        lines += [f"# {c}" if c else "#" for c in entry.comments]
        if entry.refs:
            lines.append("#: " + " ".join(entry.refs))
        if entry.flags:
            lines.append("#, " + ", ".join(entry.flags))
        if entry.msgctxt is not None:
            lines += _field("msgctxt", entry.msgctxt)
        lines += _field("msgid", entry.msgid)
        lines += _field("msgstr", entry.msgstr)
        lines.append("")
    return "\n".join(lines)


def compile_mo(catalogue: Catalogue) -> bytes:
    """The `.mo` of the translated entries (and the header), sorted by key."""
    pairs: dict[str, str] = {"": catalogue.header}
    for entry in catalogue.entries:
        if entry.translated:
            key = (
                entry.msgid if entry.msgctxt is None else entry.msgctxt + _CONTEXT_SEP + entry.msgid
            )
            pairs[key] = entry.msgstr
    return _mo_bytes(sorted(pairs.items()))


def _mo_bytes(items: Iterable[tuple[str, str]]) -> bytes:
    keys: list[bytes] = []
    values: list[bytes] = []
    for key, value in items:
        keys.append(key.encode("utf-8"))
        values.append(value.encode("utf-8"))
    count = len(keys)
    header_size = 7 * 4
    key_table = header_size
    value_table = key_table + count * 8
    data_start = value_table + count * 8
    offsets: list[int] = []
    data = b""
    for blob in (*keys, *values):
        offsets += [len(blob), data_start + len(data)]
        data += blob + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, count, key_table, value_table, 0, 0)
    return head + struct.pack(f"<{4 * count}I", *offsets) + data
