"""The code blocks of a doc page, by the name in the comment just above each:
`<!-- snippet: NAME (…) -->` (the block lives in the doc only) or `<!-- file: PATH (…) -->`
(the block is that repository file, word for word)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"<!-- (snippet|file): (\S+)[^>]*-->\n```\w+\n(.*?)```", re.S)


def snippets(doc: Path) -> dict[str, str]:
    """{name: code} of the doc's `snippet:` blocks."""
    return {m[2]: m[3] for m in _BLOCK.finditer(doc.read_text()) if m[1] == "snippet"}


def files(doc: Path) -> dict[str, str]:
    """{repository path: code} of the doc's `file:` blocks."""
    return {m[2]: m[3] for m in _BLOCK.finditer(doc.read_text()) if m[1] == "file"}


def fenced_blocks(doc: Path, language: str) -> list[str]:
    """Every ```language block of the doc, named or not."""
    return re.findall(rf"```{language}\n(.*?)```", doc.read_text(), re.S)
