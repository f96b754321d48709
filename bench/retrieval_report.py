"""Write retrieval results into docs/benchmarks.md, only between our markers.

Everything outside `<!-- retrieval:begin -->` ... `<!-- retrieval:end -->` is left byte for byte
as it is (other benchmarks own other sections). Inside, each script owns a named sub-block.
"""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN = "<!-- retrieval:begin -->"
END = "<!-- retrieval:end -->"


def _block(name: str, body: str) -> str:
    return f"<!-- retrieval:{name}:begin -->\n{body.strip()}\n<!-- retrieval:{name}:end -->"


def update_section(name: str, body: str, path: Path = BENCHMARKS) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n## Retrieval (RAG)\n\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    inner, tail = rest.split(END, 1)
    sub_begin = f"<!-- retrieval:{name}:begin -->"
    sub_end = f"<!-- retrieval:{name}:end -->"
    if sub_begin in inner and sub_end in inner:
        before, after = inner.split(sub_begin, 1)
        after = after.split(sub_end, 1)[1]
        inner = before + _block(name, body) + after
    else:
        inner = inner.rstrip("\n") + "\n\n" + _block(name, body) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + BEGIN + inner + END + tail, encoding="utf-8")
