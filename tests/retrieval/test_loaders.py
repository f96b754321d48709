from __future__ import annotations

import pytest

from tokenrelay.errors import ValidationError
from tokenrelay.retrieval.chunking import split_blocks
from tokenrelay.retrieval.loaders import html_to_text, load_bytes


def minimal_pdf(lines: list[str], title: str = "") -> bytes:
    """A one-page PDF written by hand: Helvetica text, correct xref offsets."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    info = f" /Info {len(objects)} 0 R" if title else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_text_and_title() -> None:
    pdf = minimal_pdf(["Jeju ferry schedule", "Boats leave Mokpo at 9am."], title="Ferries")
    loaded = load_bytes(pdf, "ferries.pdf")
    assert loaded.format == "pdf"
    assert loaded.title == "Ferries"
    assert "Jeju ferry schedule" in loaded.text
    assert "Boats leave Mokpo at 9am." in loaded.text


def test_pdf_without_title_uses_the_file_name() -> None:
    loaded = load_bytes(minimal_pdf(["text"]), "night_markets.pdf")
    assert loaded.title == "night markets"


def test_broken_pdf_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        load_bytes(b"%PDF-1.4 not really", "x.pdf")


def test_html_headings_become_markdown_and_scripts_vanish() -> None:
    html = """<html><head><title>Busan guide</title><style>p{}</style></head><body>
    <h1>Busan</h1><p>Haeundae &amp; Gwangalli beaches.</p><script>alert(1)</script>
    <h2>Markets</h2><ul><li>Jagalchi fish market</li><li>Gukje market</li></ul></body></html>"""
    text, title = html_to_text(html)
    assert title == "Busan guide"
    assert "alert" not in text and "p{}" not in text
    blocks = split_blocks(text)
    assert blocks[0].heading == "Busan"
    assert blocks[0].text == "Haeundae & Gwangalli beaches."
    assert [b.heading for b in blocks[1:]] == ["Busan > Markets", "Busan > Markets"]
    assert load_bytes(html.encode(), "busan.html").title == "Busan guide"


def test_markdown_title_is_the_first_heading() -> None:
    loaded = load_bytes("intro\n\n# 제주 여행\n\n본문".encode(), "jeju.md")
    assert (loaded.title, loaded.format) == ("제주 여행", "markdown")
    assert load_bytes(b"plain words", "notes.txt").title == "notes"


def test_korean_legacy_encoding_is_read() -> None:
    assert load_bytes("부산 여행".encode("cp949"), "busan.txt").text == "부산 여행"


def test_unsupported_type_says_what_is_supported() -> None:
    with pytest.raises(ValidationError) as info:
        load_bytes(b"\x00", "slides.pptx")
    assert ".pdf" in info.value.suggestion
