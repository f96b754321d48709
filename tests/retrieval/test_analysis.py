from __future__ import annotations

import pytest

from tokenrelay.retrieval.analysis import analyze, query_terms
from tokenrelay.retrieval.korean import hangul_terms, strip_suffix
from tokenrelay.retrieval.stemmer import stem


@pytest.mark.parametrize(
    "word", ["경복궁에", "경복궁은", "경복궁의", "경복궁이", "경복궁에서는", "경복궁까지"]
)
def test_korean_particles_are_stripped(word: str) -> None:
    assert strip_suffix(word) == "경복궁"
    assert hangul_terms(word) == hangul_terms("경복궁") == ("경복", "복궁")


@pytest.mark.parametrize("word", ["한국", "바다", "서울", "제주"])
def test_two_syllable_words_stay_whole(word: str) -> None:
    assert strip_suffix(word) == word


def test_subject_particle_agrees_with_final_consonant() -> None:
    assert strip_suffix("해운대가") == "해운대"  # open syllable + 가
    assert strip_suffix("광장시장이") == "광장시장"  # closed syllable + 이
    assert strip_suffix("한라산이") == "한라산"


def test_korean_question_words_are_not_terms() -> None:
    assert query_terms("경복궁 입장료는 얼마인가요?") == ["경복", "복궁", "입장", "장료"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("connections", "connect"),
        ("connected", "connect"),
        ("running", "run"),
        ("museums", "museum"),
        ("ponies", "poni"),
        ("relational", "relat"),
        ("hopefulness", "hope"),
        ("agreed", "agre"),
        ("sky", "sky"),
    ],
)
def test_porter_stemmer(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_english_analysis_stems_and_drops_stop_words() -> None:
    assert analyze("When are the museums opening?") == ["museum", "open"]
    assert analyze("the museum opens") == ["museum", "open"]


def test_mixed_scripts_and_numbers() -> None:
    assert analyze("KTX로 3,000원") == ["ktx", "로", "3000", "원"]
    assert analyze("Café") == ["café"]
