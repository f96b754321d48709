"""Korean word analysis: strip particles (조사) and common endings, then index character bigrams.

Korean attaches particles and verb endings to the word: 경복궁에, 경복궁은, 경복궁의 all mean
"경복궁 + something". A whitespace tokenizer would index three different words. We do two things:

1. `strip_suffix` removes the longest known particle/ending while at least two syllables remain
   (so 경복궁에서는 -> 경복궁, 입장료는 -> 입장료, but 바다 and 한국 stay whole).
2. `hangul_terms` turns the stem into overlapping syllable bigrams (경복궁 -> 경복, 복궁). Bigrams
   also match inside compounds (경복궁입장료, 입장료 vs 입장 요금 -> 입장) and survive endings that
   the list does not know, which a dictionary-free analyser cannot avoid. A one-syllable stem is
   kept as is.

Everything here is pure; the lists are small on purpose (no dictionary to ship).
"""

from __future__ import annotations

from functools import lru_cache

# Particles and endings, longest first so that 에서는 wins over 는. Kept to forms that are
# (almost) never the last syllables of a noun: 이/가 are only stripped after a closed syllable
# or together with another particle, see `_strip_once`.
_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        {
            # case particles and their combinations
            "에서부터",
            "으로부터",
            "에서는",
            "에서도",
            "에서의",
            "에게서",
            "으로는",
            "으로도",
            "으로의",
            "까지는",
            "까지도",
            "부터는",
            "에게는",
            "한테는",
            "이라는",
            "이라고",
            "에서",
            "에게",
            "한테",
            "께서",
            "으로",
            "까지",
            "부터",
            "처럼",
            "보다",
            "마다",
            "에는",
            "에도",
            "에의",
            "과는",
            "와는",
            "과의",
            "와의",
            "이나",
            "이랑",
            "라는",
            "이며",
            "이고",
            "로는",
            "로도",
            "로의",
            "만의",
            "만큼",
            "밖에",
            "조차",
            "마저",
            "은",
            "는",
            "을",
            "를",
            "의",
            "에",
            "와",
            "과",
            "도",
            "만",
            "로",
            "랑",
            # copula and common endings seen in questions and guides
            "입니다",
            "입니까",
            "인가요",
            "인지요",
            "이에요",
            "예요",
            "인가",
            "인지",
            "이죠",
            "이다",
            "해요",
            "하나요",
            "합니다",
            "합니까",
            "하며",
            "하고",
            "하는",
            "했다",
            "했던",
            "한다",
            "되나요",
            "됩니다",
            "되는",
            "된",
            "나요",
            "가요",
            "인데",
            "이요",
        },
        key=len,
        reverse=True,
    )
)

# subject particles: stripped only when the stem keeps >= 2 syllables and the particle agrees
# with the final consonant (경복궁이: 궁 has a final consonant -> 이; 바다가: 다 is open -> 가)
_SUBJECT_AFTER_CLOSED = "이"
_SUBJECT_AFTER_OPEN = "가"

_HANGUL_FIRST = 0xAC00
_HANGUL_LAST = 0xD7A3


def is_hangul_syllable(ch: str) -> bool:
    return _HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST


def _has_final_consonant(syllable: str) -> bool:
    return (ord(syllable) - _HANGUL_FIRST) % 28 != 0


_SUFFIX_SET = frozenset(_SUFFIXES)
_SUFFIX_LENGTHS = tuple(sorted({len(s) for s in _SUFFIXES}, reverse=True))


def _strip_once(word: str) -> str:
    for n in _SUFFIX_LENGTHS:  # longest first: 에서는 before 는
        if len(word) - n >= 2 and word[-n:] in _SUFFIX_SET:
            return word[:-n]
    if len(word) >= 3:
        last, before = word[-1], word[-2]
        if last == _SUBJECT_AFTER_CLOSED and _has_final_consonant(before):
            return word[:-1]
        if last == _SUBJECT_AFTER_OPEN and not _has_final_consonant(before):
            return word[:-1]
    return word


@lru_cache(maxsize=200_000)
def strip_suffix(word: str) -> str:
    """경복궁에서는 -> 경복궁, 입장료까지는 -> 입장료: two passes at most, >= 2 syllables kept."""
    once = _strip_once(word)
    return _strip_once(once) if once != word else word


@lru_cache(maxsize=200_000)
def hangul_terms(word: str) -> tuple[str, ...]:
    """Index terms of one run of Hangul syllables: bigrams of its stripped stem."""
    stem = strip_suffix(word)
    if len(stem) < 2:
        return (stem,)
    return tuple(stem[i : i + 2] for i in range(len(stem) - 1))
