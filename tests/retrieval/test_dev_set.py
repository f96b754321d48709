"""The development sets (eval/retrieval/dev) keep their own rules.

They were written before any method was measured on them, to choose methods on without
looking at the frozen eval sets (eval/retrieval/paraphrase.jsonl, crosslang.jsonl):
- every question points at a real section of a document in eval/retrieval/docs;
- a paraphrase shares no index term (retrieval/analysis.py) with its section, the section's
  heading or its document's title, in Korean as in English;
- as many Korean paraphrases as English ones; cross-language questions both ways.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tokenrelay.retrieval.analysis import analyze

EVAL = Path(__file__).resolve().parents[2] / "eval" / "retrieval"


def _load(name: str) -> list[dict[str, Any]]:
    lines = (EVAL / "dev" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _section(doc: str, name: str) -> str:
    """The document's title, then the section's heading and text."""
    text = (EVAL / "docs" / doc).read_text(encoding="utf-8")
    title = text.splitlines()[0].removeprefix("# ")
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return title + "\n" + next(p for p in parts if p.startswith(name + "\n"))


@pytest.mark.parametrize("name", ["paraphrase", "crosslang"])
def test_dev_questions_point_at_real_sections(name: str) -> None:
    questions = _load(name)
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert q["history"] == []
        for want in q["relevant"]:
            _section(want["doc"], want["section"])


def test_dev_paraphrases_share_no_term_with_their_section() -> None:
    questions = _load("paraphrase")
    assert len(questions) >= 40
    langs = [q["lang"] for q in questions]
    assert langs.count("ko") == langs.count("en")
    for q in questions:
        want = q["relevant"][0]
        shared = set(analyze(q["question"])) & set(analyze(_section(want["doc"], want["section"])))
        assert not shared, (q["id"], shared)


def test_dev_crosslang_goes_both_ways() -> None:
    questions = _load("crosslang")
    assert len(questions) >= 30
    for q in questions:
        source, target = q["lang"].split(">")
        assert q["relevant"][0]["doc"].startswith(f"{target}/")
        hangul = re.search(r"[\uac00-\ud7a3]", q["question"]) is not None
        assert hangul == (source == "ko"), q["id"]
    langs = [q["lang"] for q in questions]
    assert langs.count("en>ko") >= 15 and langs.count("ko>en") >= 15
