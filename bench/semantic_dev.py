"""Methods for paraphrase and cross-language recall, chosen on the development sets only.

    .venv/bin/python bench/semantic_dev.py [--no-write]   # choose, on eval/retrieval/dev
    .venv/bin/python bench/semantic_dev.py --final         # the chosen method, once, on the
                                                           # frozen eval sets

The eval documents are ingested once into the lexical store (SQLite, BM25, as without
embeddings); every chunk, every sentence of a chunk, every chunk's "title > heading" and every
question (as a query and as a passage) is embedded once by `LocalEmbedder` (whatever engine
it runs) and kept in a cache keyed by the model's name, so reruns take seconds. For each
question the lexical side is the store's own 15 candidates (`candidate_count(5)`); the vector
side is a method below, cut to 15; hybrid is `fusion.fuse` of the two (the code the server
runs), semantic is the vector side alone. A hit counts as in retrieval_eval.py.

Vector-side methods (q: the question's vector, c: a chunk's; all unit, dot = cosine):
- base: q . c (what the server does today);
- prf m beta: pseudo-relevance feedback, q' = unit(q + beta * mean of the top m chunks' c),
  then q' . c; "hybrid prf" takes the m from the fused hybrid list instead of the vector one;
- sentence max / sum lambda: each chunk's best sentence s (its sentences embedded with the
  chunk's title > heading), max(q.c, q.s) or q.c + lambda * q.s;
- heading lambda: q.c + lambda * q.h, h the vector of the chunk's "title > heading" alone;
- as passage: the question also embedded as a passage (p), (q + p) . c, or p . c alone.
Added after the first run (the criterion unchanged), for what its misses showed: English
questions still ranking English passages above the Korean one they ask about:
- language offset / z-score: each chunk's score less the mean (z-score: over the std) of the
  question's scores against the chunks of its language (Hangul or not);
- language subspace r: instead of the one shipped Korean/English direction (language_axis.py),
  the top r right singular vectors of the pairs' differences (data/ko_en_pairs.tsv, no eval
  topic; per kind) are projected out of every vector (the low-rank language subspace idea of
  Xie et al., 2022); r = 1 is close to the shipped axis. The best r then hosts stage 2.

Criterion, fixed before any number was seen (one rule for every candidate):
1. guard: hybrid recall@5 on eval/retrieval/questions.jsonl (the original set, used only as a
   no-regression guard) must not be lower than base's, measured in the same run;
2. among the candidates that pass, the best worst case of hybrid recall@5 over dev
   paraphrase and dev crosslang; ties by the mean of their hybrid MRR; then the cheaper
   (earlier in the list).
Procedure: stage 1 runs every method above with today's fusion rule; stage 2 pairs the best
prf (either kind) with the best sentence, heading and as-passage variant, and runs the best of
each family in the best language subspace; stage 3 runs a grid of fusion rules (RRF k, gate,
vector weight; convex) for base and for the stage 1-2 winner.
A method with a cost (a second search, more stored vectors, a second embedding) is adopted
only if its worst-case dev recall@5 is higher than base's; a free change (fusion settings, a
different fixed projection) also when recall ties and MRR is higher. The frozen eval sets
(eval/retrieval/paraphrase.jsonl, crosslang.jsonl) are read only with --final, which runs
base and the chosen candidate once.
Writes the `semantic-dev` block of docs/benchmarks.md (`--final`: `semantic-dev-final`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import pickle
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from retrieval_report import update_section

from tokenrelay.retrieval.analysis import query_terms
from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.chunking import split_sentences
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.fusion import FusionRule, fuse
from tokenrelay.retrieval.ingest import ingest_paths
from tokenrelay.retrieval.language_axis import derive, load_pairs, shipped_axis
from tokenrelay.retrieval.query import expand_query
from tokenrelay.retrieval.rerank import candidate_count
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vectors import passage_text

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "eval" / "retrieval"
K = 5
N = candidate_count(K)
TODAY = FusionRule(k=60, min_coverage=0.75)  # the shipped rule (config: rag_rrf_k, gate)
DEV_SETS = {"dev paraphrase": "dev/paraphrase", "dev crosslang": "dev/crosslang"}
GUARD = {"questions": "questions"}
FROZEN = {"paraphrase": "paraphrase", "crosslang": "crosslang"}
COMMAND = ".venv/bin/python bench/semantic_dev.py"
CACHE = Path(tempfile.gettempdir()) / "tokenrelay-semantic-dev.pkl"


def load(name: str) -> list[dict[str, Any]]:
    lines = (EVAL / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def unit(x: Any) -> Any:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Vectors:
    """The model's own vectors (no language direction taken out) by (model, kind, text), kept
    in a pickle between runs; every space below is made from them."""

    def __init__(self, path: Path) -> None:
        self.embedder = LocalEmbedder(language_neutral=False)
        self.path = path
        self.known: dict[tuple[str, str, str], Any] = {}
        if path.exists():
            self.known = pickle.loads(path.read_bytes())
        self.embedded = 0

    def get(self, texts: Sequence[str], kind: str) -> Any:
        model = self.embedder.model
        todo = sorted({t for t in texts if (model, kind, t) not in self.known}, key=len)
        for i in range(0, len(todo), 16):
            part = todo[i : i + 16]
            rows = self.embedder.embed_sync(part, kind)  # type: ignore[arg-type]
            for text, row in zip(part, rows, strict=True):
                self.known[(model, kind, text)] = np.asarray(row, dtype=np.float32)
            self.embedded += len(part)
            print(f"  embedded {self.embedded} texts", flush=True)
        if todo:
            self.path.write_bytes(pickle.dumps(self.known))
        return np.stack([self.known[(model, kind, t)] for t in texts])


@dataclass(frozen=True)
class Space:
    """Directions taken out of every vector (rows of an orthonormal basis, per kind)."""

    label: str
    query: Any
    passage: Any

    def apply(self, matrix: Any, kind: str) -> Any:
        basis = self.query if kind == "query" else self.passage
        rows = np.atleast_2d(np.asarray(matrix, dtype=np.float32))
        return unit(rows - (rows @ basis.T) @ basis)


def shipped_space(vectors: Vectors) -> Space:
    """The server's: the one Korean/English direction of language_axis.py."""
    axis = shipped_axis()
    if axis.model != vectors.embedder.model:  # another build of the model: derive it, as served
        axis = derive(vectors.embedder.model, lambda t, k: vectors.get(list(t), k), load_pairs())
    return Space(
        "shipped axis", axis.direction("query")[None, :], axis.direction("passage")[None, :]
    )


def subspace(vectors: Vectors, r: int) -> Space:
    """The top r right singular vectors of the pairs' Korean-minus-English differences."""
    pairs = load_pairs()
    bases = {}
    for kind in ("query", "passage"):
        diff = vectors.get([k for _, k in pairs], kind) - vectors.get([e for e, _ in pairs], kind)
        bases[kind] = np.linalg.svd(diff, full_matrices=False)[2][:r]
    return Space(f"subspace r={r}", bases["query"], bases["passage"])


@dataclass
class Corpus:
    hits: list[SearchHit]  # one per chunk, in the store's order
    index: dict[str, int]  # chunk id -> row
    docs: list[str]  # each chunk's document, relative to eval/retrieval/docs
    korean: Any  # per chunk: mostly Hangul
    chunk: Any  # chunk vectors (rows)
    heading: Any  # "title > heading" vectors
    sentence: Any  # sentence vectors
    owner: Any  # sentence row -> chunk row


@dataclass
class Question:
    text: str
    wanted: list[dict[str, str]]
    terms: list[str]
    lexical: list[SearchHit]
    query: Any
    passage: Any
    memo: dict[str, Any] = field(default_factory=dict)


Sets = dict[str, list[Question]]
Method = Callable[[Corpus, Question], Any]  # -> one score per chunk


def in_space(raw: Corpus, sets: Sets, space: Space) -> tuple[Corpus, Sets]:
    corpus = dataclasses.replace(
        raw,
        chunk=space.apply(raw.chunk, "passage"),
        heading=space.apply(raw.heading, "passage"),
        sentence=space.apply(raw.sentence, "passage"),
    )
    out: Sets = {}
    for name, questions in sets.items():
        qv = space.apply(np.stack([q.query for q in questions]), "query")
        pv = space.apply(np.stack([q.passage for q in questions]), "passage")
        out[name] = [
            dataclasses.replace(q, query=qv[i], passage=pv[i], memo={})
            for i, q in enumerate(questions)
        ]
    return corpus, out


def base(c: Corpus, q: Question) -> Any:
    return q.memo.setdefault("base", c.chunk @ q.query)


def best_sentence(c: Corpus, q: Question) -> Any:
    if "sentence" not in q.memo:
        by_sentence = c.sentence @ q.query
        best = np.full(len(c.hits), -1.0, dtype=np.float32)
        np.maximum.at(best, c.owner, by_sentence)
        q.memo["sentence"] = best
    return q.memo["sentence"]


def prf(m: int, beta: float) -> Method:
    def method(c: Corpus, q: Question) -> Any:
        top = np.argsort(-base(c, q), kind="stable")[:m]
        fed = unit(q.query + beta * c.chunk[top].mean(axis=0))
        return c.chunk @ fed

    return method


def hybrid_prf(m: int, beta: float) -> Method:
    def method(c: Corpus, q: Question) -> Any:
        fused = fuse(q.lexical, vector_hits(c, base(c, q)), q.terms, TODAY)
        top = [c.index[h.id] for h in fused[:m]]
        fed = unit(q.query + beta * c.chunk[top].mean(axis=0))
        return c.chunk @ fed

    return method


def sentence_max(c: Corpus, q: Question) -> Any:
    return np.maximum(base(c, q), best_sentence(c, q))


def sentence_sum(lam: float) -> Method:
    return lambda c, q: base(c, q) + lam * best_sentence(c, q)


def heading(lam: float) -> Method:
    return lambda c, q: base(c, q) + lam * (c.heading @ q.query)


def as_passage(c: Corpus, q: Question) -> Any:
    return base(c, q) + c.chunk @ q.passage


def passage_only(c: Corpus, q: Question) -> Any:
    return c.chunk @ q.passage


def language_offset(c: Corpus, q: Question) -> Any:
    scores = base(c, q).copy()
    for group in (c.korean, ~c.korean):
        scores[group] -= scores[group].mean()
    return scores


def language_z(c: Corpus, q: Question) -> Any:
    scores = base(c, q).copy()
    for group in (c.korean, ~c.korean):
        scores[group] = (scores[group] - scores[group].mean()) / scores[group].std()
    return scores


def plus(a: Method, b: Method) -> Method:
    """a's scores plus b's own addition to base (b - base)."""
    return lambda c, q: a(c, q) + (b(c, q) - base(c, q))


def vector_hits(c: Corpus, scores: Any) -> list[SearchHit]:
    top = np.argsort(-scores, kind="stable")[:N]
    return [dataclasses.replace(c.hits[i], score=float(scores[i])) for i in top]


def rank_of(c: Corpus, hits: Sequence[SearchHit], wanted: list[dict[str, str]]) -> int:
    for i, h in enumerate(hits[:K], 1):
        doc = c.docs[c.index[h.id]]
        if any(doc == w["doc"] and w["section"] in h.heading for w in wanted):
            return i
    return 0


Result = dict[str, dict[str, tuple[float, float]]]  # set -> mode -> (recall@5, MRR)


def evaluate(c: Corpus, sets: Sets, method: Method, rule: FusionRule) -> Result:
    out: Result = {}
    for name, questions in sets.items():
        got: dict[str, list[int]] = {"semantic": [], "hybrid": [], "lexical": []}
        for q in questions:
            vec = vector_hits(c, method(c, q))
            got["semantic"].append(rank_of(c, vec, q.wanted))
            got["hybrid"].append(rank_of(c, fuse(q.lexical, vec, q.terms, rule), q.wanted))
            got["lexical"].append(rank_of(c, q.lexical, q.wanted))
        out[name] = {
            mode: (
                sum(r > 0 for r in ranks) / len(ranks),
                sum(1 / r for r in ranks if r) / len(ranks),
            )
            for mode, ranks in got.items()
        }
    return out


def key(result: Result, guard: float) -> tuple[bool, float, float]:
    """The criterion: (guard kept, worst dev hybrid recall@5, mean dev hybrid MRR)."""
    ok = result["questions"]["hybrid"][0] >= guard
    worst = min(result[s]["hybrid"][0] for s in DEV_SETS)
    mrr = sum(result[s]["hybrid"][1] for s in DEV_SETS) / len(DEV_SETS)
    return ok, round(worst, 6), round(mrr, 6)


def relative(source: str) -> str:
    """A document's path relative to eval/retrieval/docs, as the sets name it."""
    return str(Path(source).resolve().relative_to((EVAL / "docs").resolve()))


def mostly_korean(text: str) -> bool:
    hangul = len(re.findall(r"[\uac00-\ud7a3]", text))
    return hangul > 0.3 * len(re.findall(r"[A-Za-z]", text))


async def build(vectors: Vectors, set_names: dict[str, str]) -> tuple[Corpus, Sets, int]:
    """The raw corpus and questions (the model's own vectors) and the number of sentences."""
    tmp = tempfile.TemporaryDirectory()
    store = await SqliteDocumentStore.open(Path(tmp.name) / "dev.sqlite3", rerank=False)
    await ingest_paths(store, [EVAL / "docs"])
    hits: list[SearchHit] = []
    docs: list[str] = []
    for d in await store.list_documents(limit=1000):
        source = str(d.metadata.get("source") or d.source)
        rel = relative(source)
        for ch in await store.get_chunks(d.id):
            hits.append(
                SearchHit(
                    id=ch.id,
                    document_id=d.id,
                    title=d.title,
                    snippet="",
                    score=0.0,
                    metadata={"source": source},
                    text=ch.text,
                    heading=ch.heading,
                )
            )
            docs.append(rel)
    owner: list[int] = []
    sentences: list[str] = []
    for j, h in enumerate(hits):
        head = " > ".join(p for p in (h.title, h.heading) if p)
        for para in h.text.split("\n"):
            for s in split_sentences(para):
                if s.strip():
                    owner.append(j)
                    sentences.append(f"{head}\n{s.strip()}")
    corpus = Corpus(
        hits=hits,
        index={h.id: i for i, h in enumerate(hits)},
        docs=docs,
        korean=np.array([mostly_korean(h.text) for h in hits]),
        chunk=vectors.get([passage_text(h.title, h.heading, h.text) for h in hits], "passage"),
        heading=vectors.get(
            [" > ".join(p for p in (h.title, h.heading) if p) for h in hits], "passage"
        ),
        sentence=vectors.get(sentences, "passage"),
        owner=np.array(owner),
    )
    sets: Sets = {}
    for label, name in set_names.items():
        raw = load(name)
        texts = [expand_query(q["question"], [tuple(t) for t in q["history"]]) for q in raw]
        qv = vectors.get(texts, "query")
        pv = vectors.get(texts, "passage")
        sets[label] = [
            Question(
                text=t,
                wanted=q["relevant"],
                terms=query_terms(t),
                lexical=await store.search(t, top_k=N),
                query=qv[i],
                passage=pv[i],
            )
            for i, (t, q) in enumerate(zip(texts, raw, strict=True))
        ]
    await store.close()
    tmp.cleanup()
    return corpus, sets, len(sentences)


def stage1() -> list[tuple[str, Method]]:
    out: list[tuple[str, Method]] = [("base", base)]
    for m in (2, 3, 4, 5):
        for beta in (0.3, 0.5, 0.7, 1.0):
            out.append((f"prf m={m} beta={beta:g}", prf(m, beta)))
    for m in (2, 3):
        for beta in (0.5, 1.0):
            out.append((f"hybrid prf m={m} beta={beta:g}", hybrid_prf(m, beta)))
    out.append(("sentence max", sentence_max))
    for lam in (0.3, 0.5, 1.0):
        out.append((f"sentence sum lambda={lam:g}", sentence_sum(lam)))
    for lam in (0.3, 0.5):
        out.append((f"heading lambda={lam:g}", heading(lam)))
    out.append(("as passage: (q + p) . c", as_passage))
    out.append(("as passage: p . c alone", passage_only))
    out.append(("language offset", language_offset))
    out.append(("language z-score", language_z))
    return out


SUBSPACES = (1, 2, 4, 6, 8, 12, 16)
RULES: tuple[FusionRule, ...] = tuple(
    [
        FusionRule(k=k, min_coverage=gate, vector_weight=w)
        for k in (10, 30, 60)
        for gate in (0.0, 0.5, 0.75, 1.0)
        for w in (1.0, 2.0)
    ]
    + [FusionRule(kind="convex", alpha=a) for a in (0.7, 0.85)]
)


def cells(result: Result, names: Sequence[str], mode: str) -> str:
    return " | ".join(f"{result[n][mode][0]:.3f} / {result[n][mode][1]:.3f}" for n in names)


@dataclass
class Candidate:
    label: str
    method: Method
    space: Space


class Run:
    """Measures candidates on some sets, each in its space; keeps every row for the table."""

    def __init__(self, raw: Corpus, sets: Sets) -> None:
        self.raw = raw
        self.sets = sets
        self.spaces: dict[str, tuple[Corpus, Sets]] = {}
        self.rows: list[tuple[str, FusionRule, Result]] = []
        self.guard = 0.0

    def measure(self, cand: Candidate, rule: FusionRule = TODAY) -> Result:
        if cand.space.label not in self.spaces:
            self.spaces[cand.space.label] = in_space(self.raw, self.sets, cand.space)
        corpus, sets = self.spaces[cand.space.label]
        result = evaluate(corpus, sets, cand.method, rule)
        self.rows.append((cand.label, rule, result))
        names = list(self.sets)
        print(f"{cand.label} [{rule.label()}] hybrid {cells(result, names, 'hybrid')}", flush=True)
        return result


def choose(run: Run, vectors: Vectors) -> tuple[Candidate, FusionRule]:
    """Stages 1-3 of the docstring; returns the chosen candidate and fusion rule."""
    shipped = shipped_space(vectors)
    cands = {label: Candidate(label, m, shipped) for label, m in stage1()}
    for r in SUBSPACES:
        space = subspace(vectors, r)
        cands[space.label] = Candidate(space.label, base, space)
    results = {}
    for label, cand in cands.items():
        results[label] = run.measure(cand)
        if label == "base":
            run.guard = results[label]["questions"]["hybrid"][0]

    def best(prefixes: tuple[str, ...]) -> str:
        family = [lab for lab in results if lab.startswith(prefixes)]
        return max(family, key=lambda lab: key(results[lab], run.guard))

    families = {
        "prf": best(("prf", "hybrid prf")),
        "sentence": best(("sentence",)),
        "heading": best(("heading",)),
        "as passage": best(("as passage",)),
        "language": best(("language",)),
    }
    stage2: list[Candidate] = []
    prf_best = cands[families["prf"]]
    for family in ("sentence", "heading", "as passage"):
        partner = cands[families[family]]
        stage2.append(
            Candidate(
                f"{prf_best.label} + {partner.label}",
                plus(partner.method, prf_best.method),
                shipped,
            )
        )
    space = cands[best(("subspace",))].space
    for label in families.values():
        stage2.append(Candidate(f"{label} in {space.label}", cands[label].method, space))
    for cand in stage2:
        cands[cand.label] = cand
        results[cand.label] = run.measure(cand)
    order = list(results)
    winner = max(order, key=lambda lab: (key(results[lab], run.guard), -order.index(lab)))
    rule_of = {}
    for who in dict.fromkeys(["base", winner]):
        best_rule, best_result = TODAY, results[who]
        for rule in RULES:
            if rule != TODAY:
                result = run.measure(cands[who], rule)
                if key(result, run.guard) > key(best_result, run.guard):
                    best_rule, best_result = rule, result
        rule_of[who] = best_rule
    return cands[winner], rule_of[winner]


def table(run: Run, chosen: tuple[str, FusionRule]) -> str:
    """One row per candidate under today's fusion rule (and the chosen one's, if other):
    hybrid recall@5 / MRR per set, then semantic (the vector side alone) recall@5 per set."""
    names = list(run.sets)
    head = " | ".join(f"{n} R@5 / MRR" for n in names)
    lines = [
        f"| method (hybrid, {TODAY.label()} unless said) | {head} | semantic R@5 |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    first = run.rows[0][2]
    lines.append(f"| (lexical alone) | {cells(first, names, 'lexical')} | |")
    for label, rule, result in run.rows:
        if rule != TODAY and (label, rule) != chosen:
            continue  # stage 3's grid: printed while running, summed up above the table
        name = label if rule == TODAY else f"{label}, {rule.label()}"
        mark = " **(chosen)**" if (label, rule) == chosen else ""
        semantic = " / ".join(f"{result[n]['semantic'][0]:.3f}" for n in names)
        lines.append(f"| {name}{mark} | {cells(result, names, 'hybrid')} | {semantic} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--final", action="store_true", help="chosen vs base on the frozen sets")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    started, cpu = time.perf_counter(), time.process_time()
    vectors = Vectors(args.cache)
    names = {**DEV_SETS, **GUARD, **(FROZEN if args.final else {})}
    raw, sets, sentences = asyncio.run(build(vectors, names))
    dev = Run(raw, {n: sets[n] for n in (*DEV_SETS, *GUARD)})
    winner, rule = choose(dev, vectors)
    base_key = key(dev.rows[0][2], dev.guard)
    win_key = key(
        next(r for lab, ru, r in dev.rows if (lab, ru) == (winner.label, rule)), dev.guard
    )
    print(f"chosen: {winner.label} [{rule.label()}]; criterion {win_key}, base {base_key}")
    model = vectors.embedder.model
    if args.final:
        frozen = Run(raw, {n: sets[n] for n in (*GUARD, *FROZEN)})
        frozen.measure(Candidate("base", base, shipped_space(vectors)))
        if (winner.label, rule) != ("base", TODAY):
            frozen.measure(winner, rule)
        body = "\n".join(
            [
                "### The method chosen on the development sets, run once on the eval sets",
                "",
                f"`{COMMAND} --final` (`{model}`): base (today) and the method"
                f" bench/semantic_dev.py chose on eval/retrieval/dev, `{winner.label}` with"
                f" {rule.label()}, run once on the frozen sets; nothing was changed after.",
                "",
                table(frozen, (winner.label, rule)),
            ]
        )
        block = "semantic-dev-final"
    else:
        body = "\n".join(
            [
                "### Methods chosen on the development sets (eval/retrieval/dev)",
                "",
                f"`{COMMAND}` ({len(raw.hits)} chunks, {sentences} sentences, `{model}`,"
                " vectors cached): hybrid fuses the store's 15 BM25 candidates with each"
                " method's 15 vector candidates; semantic is the vector side alone. Criterion,"
                " fixed before the numbers (the script's docstring): hybrid recall@5 on"
                " questions.jsonl not below base's; then the best worst case of hybrid recall@5"
                " over dev paraphrase and dev crosslang, ties by their mean hybrid MRR, then the"
                " cheaper. A method with a cost is adopted only if its worst case beats base's."
                " One question is 0.015 (paraphrase, 68) or 0.026 (crosslang, 38). Stage 3"
                f" ({len(RULES)} fusion rules, RRF k 10/30/60 x gate 0/0.5/0.75/1 x vector"
                " weight 1/2, convex 0.7/0.85) found no rule better than today's"
                f" ({TODAY.label()}) for base"
                f"{'' if rule == TODAY else ' (but one for the winner)'};"
                " its rows are left out of the table. Chosen:"
                f" `{winner.label}`, {rule.label()}.",
                "",
                table(dev, (winner.label, rule)),
            ]
        )
        block = "semantic-dev"
    print(body)
    load_avg = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    print(f"{wall:.0f} s wall, {used:.0f} s CPU, load average {load_avg}")
    if not args.no_write:
        update_section(block, body)


if __name__ == "__main__":
    main()
