"""Language-neutral vectors: the Korean/English direction taken out of an embedding space.

A multilingual model such as multilingual-e5-small places a text near other texts *in its own
language*: the English question "What is the admission fee for Gyeongbokgung Palace?" ranked
English passages about Kyoto's temples above the Korean passage on 경복궁's admission fee. Much of
that bias is one direction: the mean difference between the embeddings of Korean and English
sentences that say the same thing (`data/ko_en_pairs.tsv`: the project's messages and their
Korean translations, no topic of the retrieval eval). Projecting that direction out of every
vector, question and passage alike, and scaling back to unit length, leaves what the text says
(docs/benchmarks.md, `semantic-variants`).

Queries and passages are embedded differently (E5's "query: " / "passage: " prefixes), so each
kind has its own direction. The directions of the local model are shipped
(`data/language_axis.json`, made by `derive` from the pairs with that model); another build of
the model derives them again on first use (`embed_local.py`). Pure except the file reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

from tokenrelay.retrieval.embedding import EmbedKind

PAIRS_FILE = "ko_en_pairs.tsv"
AXIS_FILE = "language_axis.json"


@dataclass(frozen=True)
class LanguageAxis:
    """The unit Korean-minus-English direction for questions and for passages."""

    model: str
    query: tuple[float, ...]
    passage: tuple[float, ...]

    def direction(self, kind: EmbedKind) -> Any:
        return np.asarray(self.query if kind == "query" else self.passage, dtype=np.float32)

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "query": [round(x, 7) for x in self.query],
                "passage": [round(x, 7) for x in self.passage],
            }
        )


def _data(name: str) -> str:
    return files("tokenrelay.retrieval").joinpath("data", name).read_text(encoding="utf-8")


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """(English, Korean) pairs of a tab-separated file; `#` lines are comments."""
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            english, korean = line.split("\t")
            pairs.append((english, korean))
    return pairs


def load_pairs() -> list[tuple[str, str]]:
    """The pairs the shipped axis is derived from (`data/ko_en_pairs.tsv`)."""
    return parse_pairs(_data(PAIRS_FILE))


def shipped_axis() -> LanguageAxis:
    raw = json.loads(_data(AXIS_FILE))
    return LanguageAxis(raw["model"], tuple(raw["query"]), tuple(raw["passage"]))


def _unit(vector: Any) -> Any:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def derive(
    model: str, embed: Callable[[Sequence[str], EmbedKind], Any], pairs: Sequence[tuple[str, str]]
) -> LanguageAxis:
    """The axis of `model`: mean(embedding of the Korean side - of the English side), per kind.
    `embed(texts, kind)` returns one row per text."""
    english = [e for e, _ in pairs]
    korean = [k for _, k in pairs]
    found: dict[str, tuple[float, ...]] = {}
    for kind in ("query", "passage"):
        diff = np.asarray(embed(korean, kind)) - np.asarray(embed(english, kind))
        found[kind] = tuple(float(x) for x in _unit(diff.mean(axis=0)))
    return LanguageAxis(model, found["query"], found["passage"])


def neutral(matrix: Any, direction: Any) -> Any:
    """Each row of `matrix` without its component along the unit `direction`, at unit length."""
    rows = np.asarray(matrix, dtype=np.float32)
    out = rows - np.outer(rows @ direction, direction)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
