"""File bytes -> text for chunking: .txt, .md, .html (stdlib html.parser), .pdf (pypdf, lazy).

HTML headings become markdown headings so that the chunker sees the same structure.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

from tokenrelay.errors import ValidationError, misconfigured
from tokenrelay.i18n import tr

SUPPORTED_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"})


@dataclass(frozen=True, slots=True)
class LoadedText:
    text: str
    title: str  # from <title>, the first markdown heading, the PDF metadata, or the file name
    format: str  # "text" | "markdown" | "html" | "pdf"


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationError(
        tr("{name}: not UTF-8 text", name=name),
        suggestion=tr("save the file as UTF-8 (or upload it as PDF)"),
    )


_FIRST_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _stem_title(name: str) -> str:
    return PurePath(name).stem.replace("_", " ").replace("-", " ").strip() or name


class _HtmlText(HTMLParser):
    """Collects visible text; h1-h6 -> '#' headings, block elements -> paragraph breaks."""

    _BLOCKS = frozenset(
        [
            "p",
            "div",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "aside",
            "nav",
            "ul",
            "ol",
            "li",
            "table",
            "tr",
            "br",
            "hr",
            "blockquote",
            "pre",
            "dl",
            "dt",
            "dd",
            "figure",
            "figcaption",
            "form",
        ]
    )
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCKS:
            self.parts.append("\n\n" if tag != "li" else "\n\n- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif (len(tag) == 2 and tag[0] == "h" and tag[1] in "123456") or tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        raw = "".join(self.parts)
        lines = [line.strip() for line in raw.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str) -> tuple[str, str]:
    """(text with markdown headings, <title>)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text(), parser.title.strip()


def pdf_to_text(data: bytes) -> tuple[str, str]:
    """(text of all pages, title from the PDF metadata or "")."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as e:  # pragma: no cover - depends on the install
        raise misconfigured(
            ValidationError,
            tr("PDF files cannot be read on this server"),
            "PDF support needs the pypdf package: pip install 'tokenrelay[documents]'"
            " (or pip install pypdf)",
            suggestion=tr("upload the document as text, Markdown or HTML"),
        ) from e
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title).strip()
    except (PdfReadError, ValueError, KeyError, TypeError) as e:
        raise ValidationError(
            tr("could not read the PDF: {detail}", detail=str(e)),
            suggestion=tr("check that the file is a valid, unencrypted PDF"),
        ) from e
    return "\n\n".join(p for p in pages if p), title


def load_bytes(data: bytes, filename: str) -> LoadedText:
    """Text and title of an uploaded or read file; the suffix of `filename` picks the loader."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValidationError(
            tr(
                "unsupported file type {suffix!r} for {name}",
                suffix=suffix or "(none)",
                name=filename,
            ),
            suggestion=tr("upload .txt, .md, .html or .pdf"),
        )
    if suffix == ".pdf":
        text, title = pdf_to_text(data)
        return LoadedText(text, title or _stem_title(filename), "pdf")
    decoded = _decode(data, filename)
    if suffix in (".html", ".htm"):
        text, title = html_to_text(decoded)
        return LoadedText(text, title or _stem_title(filename), "html")
    heading = _FIRST_HEADING.search(decoded) if suffix in (".md", ".markdown") else None
    title = heading.group(1).strip() if heading else _stem_title(filename)
    return LoadedText(decoded, title, "markdown" if suffix in (".md", ".markdown") else "text")
