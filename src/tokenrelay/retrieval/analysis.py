"""Text -> index terms, the same function for documents and queries, for every store.

One analyser in Python (rather than FTS5's `porter` tokenizer or PostgreSQL's `english`
configuration) keeps SQLite and PostgreSQL ranking identical and lets Korean and English share
one index: the stores only split our output on spaces.

- NFKC + lower case, then runs of one script: Hangul, other CJK, everything else (Latin, digits).
- Hangul runs: particle/ending stripping + syllable bigrams (`korean.py`).
- Other CJK runs (Han, kana): character bigrams.
- Latin runs: stop words dropped, Porter stem (`stemmer.py`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from tokenrelay.retrieval.korean import hangul_terms, strip_suffix
from tokenrelay.retrieval.stemmer import stem

_RUNS = re.compile(
    r"(?P<hangul>[\uac00-\ud7a3]+)"
    r"|(?P<cjk>[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)"
    r"|(?P<word>[^\W_\uac00-\ud7a3\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)"
)

ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "tell",
        "please",
    ]
)

# question words and fillers, compared after particle stripping (얼마인가요 -> 얼마)
KOREAN_STOP_WORDS = frozenset(
    [
        "얼마",
        "얼마나",
        "어디",
        "어디서",
        "언제",
        "무엇",
        "무엇이",
        "뭐",
        "뭔가요",
        "뭐예요",
        "뭐가",
        "몇",
        "어느",
        "어떤",
        "무슨",
        "어떻게",
        "누구",
        "왜",
        "알려주세요",
        "알려줘",
        "알려줘요",
        "있나요",
        "있어요",
        "있습니까",
        "있을까요",
        "있는지",
        "좋을까요",
        "될까요",
        "되나요",
        "하나요",
        "좀",
        "그리고",
        "그런데",
        "그래서",
        "또는",
        "및",
        "등",
        "수",
        "것",
        "거",
        "저",
        "제",
        "나",
        "우리",
        "이",
        "그",
        "저기",
        "여기",
    ]
)


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")


def _normalize(text: str) -> str:
    """NFKC, lower case, and 3,000 -> 3000 so that numbers match however they are written."""
    return _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).lower())


@lru_cache(maxsize=200_000)
def _word_term(word: str) -> str | None:
    if word in ENGLISH_STOP_WORDS:
        return None
    return stem(word) if word.isascii() else word


def _cjk_bigrams(run: str) -> list[str]:
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _token_terms(token: str) -> tuple[str, ...]:
    """Terms of one normalised, space-free token."""
    terms: list[str] = []
    for match in _RUNS.finditer(token):
        kind = match.lastgroup
        run = match.group()
        if kind == "hangul":
            if strip_suffix(run) in KOREAN_STOP_WORDS or run in KOREAN_STOP_WORDS:
                continue
            terms.extend(hangul_terms(run))
        elif kind == "cjk":
            terms.extend(_cjk_bigrams(run))
        else:
            term = _word_term(run)
            if term is not None:
                terms.append(term)
    return tuple(terms)


# token -> its terms. Most words recur, so after the first few documents analysis is mostly
# dictionary lookups. Bounded: when full it is emptied and refilled with what comes next.
_TOKEN_CACHE: dict[str, tuple[str, ...]] = {}
_TOKEN_CACHE_SIZE = 300_000
# ASCII punctuation is never part of a term (every run is letters/digits of one script), so
# "palace." and "palace," share the cache entry of "palace"
_PUNCTUATION = "\"'()[]{}<>.,;:!?-/*&%$#@~`^|+=_"


def analyze(text: str) -> list[str]:
    """Index terms of `text` in order (positions matter to the reranker).

    No run of one script crosses whitespace, so the text is analysed token by token, and each
    distinct token once (`_TOKEN_CACHE`): without the cache this is most of the ingest time.
    """
    cache = _TOKEN_CACHE
    terms: list[str] = []
    for token in _normalize(text).split():
        found = cache.get(token)
        if found is None:
            key = token.strip(_PUNCTUATION)
            found = cache.get(key)
            if found is None:
                found = _token_terms(key)
                if len(cache) >= _TOKEN_CACHE_SIZE:
                    cache.clear()
                cache[key] = found
        terms.extend(found)
    return terms


def query_terms(text: str) -> list[str]:
    """Distinct query terms in first-seen order."""
    return list(dict.fromkeys(analyze(text)))


@lru_cache(maxsize=4096)
def heading_terms(heading: str) -> tuple[str, ...]:
    """Terms of a heading path (few, and shared by every chunk of a section): cached."""
    return tuple(analyze(heading))


def index_text(text: str) -> str:
    """Space-joined terms: what the stores put into their full-text column."""
    return " ".join(analyze(text))
