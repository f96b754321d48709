"""One contract, two real stores (SQLite FTS5 and PostgreSQL), see conftest.py."""

from __future__ import annotations

from pathlib import Path

from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.ingest import ingest_paths, ingest_text

PALACES = """# 서울의 궁궐

## 경복궁
경복궁은 1395년에 세워진 조선의 정궁이다. 입장료는 성인 3,000원이며 매주 화요일 휴궁한다.
광화문에서 수문장 교대식이 하루 두 번 열린다.

## 창덕궁
창덕궁은 유네스코 세계유산으로 후원이 유명하다. 후원 관람은 예약이 필요하다.
"""

MUSEUMS = """# Museums of Seoul

## National Museum of Korea
The museum opens at 10:00 and closes at 18:00; admission to the permanent exhibition is free.

## War Memorial
Outdoor exhibits of aircraft and tanks. Guided tours run twice a day.
"""

MARKETS = """# 부산 시장

## 자갈치시장
자갈치시장은 한국 최대의 수산시장이다. 2층 식당에서 회를 먹을 수 있다.
"""


async def _load(store: DocumentStore) -> dict[str, str]:
    ids = {}
    for title, text in (("서울 궁궐", PALACES), ("Seoul museums", MUSEUMS), ("부산 시장", MARKETS)):
        result = await ingest_text(store, text, title, metadata={"lang": "test"})
        ids[title] = result.document.id
    return ids


async def test_korean_particles_find_the_passage(store: DocumentStore) -> None:
    await _load(store)
    for query in ("경복궁에", "경복궁은", "경복궁의", "경복궁에서는 무엇을 볼 수 있나요"):
        hits = await store.search(query, top_k=3)
        assert hits, query
        assert "경복궁" in hits[0].heading, (query, hits[0])


async def test_korean_question_ranks_the_right_section(store: DocumentStore) -> None:
    await _load(store)
    hits = await store.search("창덕궁 후원은 예약해야 하나요?", top_k=3)
    assert hits[0].heading.endswith("창덕궁")
    hits = await store.search("부산에서 회를 먹으려면", top_k=3)
    assert hits[0].title == "부산 시장"


async def test_english_stemming(store: DocumentStore) -> None:
    await _load(store)
    hits = await store.search("When does the museum open?", top_k=3)
    assert hits[0].heading.endswith("National Museum of Korea")
    hits = await store.search("guide touring", top_k=3)
    assert hits[0].heading.endswith("War Memorial")


async def test_hit_shape(store: DocumentStore) -> None:
    ids = await _load(store)
    hit = (await store.search("National Museum admission", top_k=1))[0]
    assert hit.document_id == ids["Seoul museums"]
    assert hit.title == "Seoul museums"
    assert hit.score > 0
    assert "admission" in hit.snippet
    assert hit.metadata["lang"] == "test"
    assert hit.metadata["heading"].endswith("National Museum of Korea")
    source = hit.to_source()
    assert set(source) == {"id", "title", "snippet", "score", "metadata"}


async def test_top_k_and_min_score(store: DocumentStore) -> None:
    await _load(store)
    assert len(await store.search("경복궁 창덕궁 museum 시장", top_k=2)) == 2
    assert await store.search("경복궁", top_k=5, min_score=1e9) == []
    assert await store.search("xyzzy nothing matches", top_k=5) == []
    assert await store.search("the of and", top_k=5) == []  # only stop words


async def test_reingest_same_content_is_unchanged_and_ids_stable(store: DocumentStore) -> None:
    first = await ingest_text(store, PALACES, "서울 궁궐")
    chunks_before = await store.get_chunks(first.document.id)
    again = await ingest_text(store, PALACES, "서울 궁궐")
    assert (first.status, again.status) == ("created", "unchanged")
    assert again.document.id == first.document.id
    assert [c.id for c in await store.get_chunks(first.document.id)] == [
        c.id for c in chunks_before
    ]
    assert await store.count() == (1, len(chunks_before))


async def test_same_source_new_content_replaces(store: DocumentStore) -> None:
    first = await ingest_text(store, PALACES, "궁궐", source="palaces.md")
    second = await ingest_text(store, PALACES.replace("3,000원", "5,000원"), "궁궐", "palaces.md")
    assert second.status == "updated"
    assert second.document.id == first.document.id
    assert (await store.count())[0] == 1
    hits = await store.search("경복궁 입장료", top_k=1)
    assert "5,000원" in hits[0].text
    doc = await store.get_document(first.document.id)
    assert doc is not None and doc.created_at <= doc.updated_at


async def test_delete(store: DocumentStore) -> None:
    ids = await _load(store)
    assert await store.delete_document(ids["서울 궁궐"]) is True
    assert await store.delete_document(ids["서울 궁궐"]) is False
    assert await store.get_document(ids["서울 궁궐"]) is None
    assert await store.get_chunks(ids["서울 궁궐"]) == []
    hits = await store.search("경복궁", top_k=5)
    assert all(h.document_id != ids["서울 궁궐"] for h in hits)
    assert (await store.count())[0] == 2


async def test_list_and_get(store: DocumentStore) -> None:
    ids = await _load(store)
    docs = await store.list_documents()
    assert {d.id for d in docs} == set(ids.values())
    assert len(await store.list_documents(limit=1)) == 1
    assert len(await store.list_documents(limit=10, offset=2)) == 1
    doc = await store.get_document(ids["Seoul museums"])
    assert doc is not None
    assert (doc.title, doc.metadata, doc.chunk_count) == ("Seoul museums", {"lang": "test"}, 2)
    assert await store.get_document("doc_missing") is None


async def test_ingest_paths_walks_folders(store: DocumentStore, tmp_path: Path) -> None:
    folder = tmp_path / "guides"
    (folder / "sub").mkdir(parents=True)
    (folder / "palaces.md").write_text(PALACES, encoding="utf-8")
    (folder / "sub" / "museums.txt").write_text(MUSEUMS, encoding="utf-8")
    (folder / "sub" / "busan.html").write_text(
        "<title>부산</title><h1>자갈치시장</h1><p>수산시장</p>", encoding="utf-8"
    )
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / ".hidden.md").write_text("secret", encoding="utf-8")
    (folder / "empty.txt").write_text("   ", encoding="utf-8")
    report = await ingest_paths(store, [folder])
    assert report.counts() == {"created": 3, "updated": 0, "unchanged": 0, "skipped": 1}
    assert report.skipped[0][0].endswith("empty.txt")
    again = await ingest_paths(store, [folder])
    assert again.counts()["unchanged"] == 3
    assert (await store.count())[0] == 3
    hits = await store.search("자갈치시장은", top_k=1)
    assert hits[0].metadata["format"] == "html"
