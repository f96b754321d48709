from __future__ import annotations

import itertools

from tokenrelay.retrieval.chunking import chunk_text, document_id_for, split_blocks

GUIDE = """# Seoul guide

Seoul is the capital.

## Palaces

### Gyeongbokgung
Gyeongbokgung was built in 1395. Admission is 3,000 won.

Closed on Tuesdays.

Markets
-------
Gwangjang Market is known for bindaetteok.
"""


def test_headings_become_paths() -> None:
    headings = [b.heading for b in split_blocks(GUIDE)]
    assert headings == [
        "Seoul guide",
        "Seoul guide > Palaces > Gyeongbokgung",
        "Seoul guide > Palaces > Gyeongbokgung",
        "Seoul guide > Markets",
    ]


def test_sections_are_not_mixed_and_paragraphs_stay_together() -> None:
    chunks = chunk_text("d", GUIDE, chunk_chars=500)
    assert [c.heading for c in chunks] == [
        "Seoul guide",
        "Seoul guide > Palaces > Gyeongbokgung",
        "Seoul guide > Markets",
    ]
    assert chunks[1].text == (
        "Gyeongbokgung was built in 1395. Admission is 3,000 won.\n\nClosed on Tuesdays."
    )
    assert [c.ordinal for c in chunks] == [0, 1, 2]


def test_long_sections_split_at_sentences_with_overlap() -> None:
    body = " ".join(f"Sentence {i} is about the secret garden." for i in range(40))
    chunks = chunk_text("d", f"# Garden\n\n{body}\n", chunk_chars=300, overlap=100)
    assert len(chunks) > 3
    assert all(len(c.text) <= 300 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.split(". ")[-1]
        assert last_sentence.rstrip(".") in after.text  # overlap carries the tail over
    # every sentence is somewhere
    joined = " ".join(c.text for c in chunks)
    assert all(f"Sentence {i} " in joined for i in range(40))


def test_offsets_point_into_the_text() -> None:
    body = " ".join(f"Sentence {i} is here." for i in range(60))
    text = f"# T\n\n{body}\n"
    for chunk in chunk_text("d", text, chunk_chars=200, overlap=40):
        assert text[chunk.start : chunk.end] == chunk.text


def test_a_word_longer_than_a_chunk_is_hard_split() -> None:
    chunks = chunk_text("d", "가" * 1000, chunk_chars=300, overlap=0)
    assert [len(c.text) for c in chunks] == [300, 300, 300, 100]


def test_ids_are_stable_and_content_addressed() -> None:
    a = chunk_text(document_id_for(GUIDE), GUIDE)
    b = chunk_text(document_id_for(GUIDE), GUIDE)
    assert [c.id for c in a] == [c.id for c in b]
    changed = GUIDE.replace("3,000", "4,000")
    c = chunk_text(document_id_for(changed), changed)
    assert document_id_for(changed) != document_id_for(GUIDE)
    assert document_id_for(changed, "guide.md") == document_id_for(GUIDE, "guide.md")
    assert len({ch.id for ch in a + c}) == len(a) + len(c)


def test_repeated_paragraphs_get_distinct_ids() -> None:
    text = "# A\n\nsame\n\n# A\n\nsame\n"
    chunks = chunk_text("d", text)
    assert len(chunks) == 2 or len({c.id for c in chunks}) == len(chunks)
    assert len({c.id for c in chunks}) == len(chunks)


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("d", "  \n\n ") == []
