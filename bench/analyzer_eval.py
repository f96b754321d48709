"""Word analysis: today's hand-made Korean stripping and Porter stemmer against registry ones.

    PYTHONPATH=<kiwipiepy, kiwipiepy-model, pystemmer> .venv/bin/python bench/analyzer_eval.py

Variants, each swapped into `analysis.py` for the whole run (index and questions alike):
- ours: particle/ending stripping + syllable bigrams (korean.py), Porter (stemmer.py);
- snowball-en: English by PyStemmer's Snowball `english` stemmer (C), Korean as ours;
- kiwi-ko: each Hangul word as Kiwi's morphemes (kiwipiepy, with its model package), content
  morphemes only (nouns, verb and adjective stems, roots, foreign words, numbers, hanja);
- kiwi-ko+bigrams: Kiwi's morphemes added to ours (stripped word + syllable bigrams);
- both: snowball-en with kiwi-ko+bigrams.
For each: lexical recall@5 and MRR on the three eval sets (SQLite store), and the analysis rate
on the eval corpus with every cache cold. Writes the `analyzers` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_eval import relevant
from retrieval_report import update_section
from semantic_eval import EVAL, SETS, load

from tokenrelay.retrieval import analysis
from tokenrelay.retrieval.ingest import ingest_paths
from tokenrelay.retrieval.korean import hangul_terms as ours_korean
from tokenrelay.retrieval.korean import strip_suffix
from tokenrelay.retrieval.query import expand_query
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.stemmer import stem as ours_stem

K = 5
CONTENT_TAGS = ("NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SL", "SN", "SH")


def kiwi_korean(with_ours: bool) -> Callable[[str], tuple[str, ...]]:
    from kiwipiepy import Kiwi

    kiwi = Kiwi()

    def terms(word: str) -> tuple[str, ...]:
        found = [t.form for t in kiwi.tokenize(word) if t.tag.startswith(CONTENT_TAGS)]
        if with_ours:
            return tuple(dict.fromkeys([*ours_korean(word), *found]))
        return tuple(found) or ours_korean(word)[:1]

    return terms


def snowball() -> Callable[[str], str]:
    import Stemmer

    english = Stemmer.Stemmer("english")
    return english.stemWord  # type: ignore[no-any-return]


def use(stem: Callable[[str], str], korean: Callable[[str], tuple[str, ...]]) -> None:
    analysis.stem = stem  # type: ignore[attr-defined]
    analysis.hangul_terms = korean  # type: ignore[attr-defined]
    cold()


def cold() -> None:
    """Every cache of the analysis empty, ours and the registry analyzers' wrappers alike."""
    ours_stem.cache_clear()
    ours_korean.cache_clear()
    strip_suffix.cache_clear()
    analysis._word_term.cache_clear()
    analysis.heading_terms.cache_clear()
    analysis._TOKEN_CACHE.clear()


def corpus() -> str:
    return "\n".join(f.read_text(encoding="utf-8") for f in sorted((EVAL / "docs").rglob("*.md")))


async def measure(name: str) -> list[str]:
    text = corpus()
    cold()
    started = time.perf_counter()
    analysis.analyze(text)
    rate = len(text) / (time.perf_counter() - started)
    cold()
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteDocumentStore.open(Path(tmp) / "eval.sqlite3")
        await ingest_paths(store, [EVAL / "docs"])
        cells = []
        for set_name in SETS:
            found, rr = 0, 0.0
            questions = load(set_name)
            for q in questions:
                query = expand_query(q["question"], [tuple(t) for t in q["history"]])
                hits = await store.search(query, top_k=K)
                rank = next(
                    (i for i, h in enumerate(hits, 1) if relevant(h, q["relevant"], EVAL / "docs")),
                    0,
                )
                found += rank > 0
                rr += 1 / rank if rank else 0.0
            cells.append(f"{found / len(questions):.3f} / {rr / len(questions):.3f}")
        await store.close()
    row = f"| {name} | {' | '.join(cells)} | {rate / 1000:.0f} k chars/s |"
    print(row, flush=True)
    return [row]


async def run() -> str:
    import importlib.metadata as md

    variants: list[tuple[str, Callable[[str], str], Callable[[str], tuple[str, ...]]]] = [
        ("ours (korean.py + Porter)", ours_stem, ours_korean),
        ("snowball-en (PyStemmer)", snowball(), ours_korean),
        ("kiwi-ko (morphemes only)", ours_stem, kiwi_korean(False)),
        ("kiwi-ko+bigrams", ours_stem, kiwi_korean(True)),
        ("both: snowball-en + kiwi-ko+bigrams", snowball(), kiwi_korean(True)),
    ]
    rows: list[str] = []
    for name, stem, korean in variants:
        use(stem, korean)
        rows += await measure(name)
    use(ours_stem, ours_korean)
    head = " | ".join(f"{n} R@5 / MRR" for n in SETS)
    versions = ", ".join(
        f"{d} {md.version(d)}" for d in ("kiwipiepy", "kiwipiepy-model", "pystemmer")
    )
    return "\n".join(
        [
            "### Word analysis: ours against registry analyzers",
            "",
            f"`.venv/bin/python bench/analyzer_eval.py` ({versions}): lexical search only"
            " (SQLite, BM25, no rerank); analysis rate over the eval corpus with cold caches.",
            "",
            f"| analysis | {head} | analysis rate |",
            "|---|" + "---|" * (len(SETS) + 1),
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(run())
    print(body)
    if not args.no_write:
        update_section("analyzers", body)


if __name__ == "__main__":
    main()
