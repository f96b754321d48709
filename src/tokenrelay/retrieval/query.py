"""Follow-up questions: add the subject of the last turns to the retrieval query. Pure.

"그곳의 입장료는?" after "경복궁은 언제 지어졌나요?" cannot be answered from its own words; the
retrieval query becomes the question plus the previous user turn. Only the *retrieval* query
changes; the model still sees the conversation as it was.
"""

from __future__ import annotations

import re

from tokenrelay.retrieval.analysis import query_terms

# words that point back at something said before (Korean demonstratives, English pronouns)
_KOREAN_REFERENCES = re.compile(
    r"(그곳|그 곳|거기|그것|그거|이곳|이 곳|저곳|그 장소|그 절|그 궁|그 시장|"
    r"그 섬|그 해변|그 박물관|그 도시|그 밖|그분|그녀|그들|그때|그 당시|그럼|"
    r"그러면|그리고|또|그밖에|이건|저건|그건|그게|여기|저기|그\s)"
)
_ENGLISH_REFERENCES = re.compile(
    r"\b(it|its|it's|there|that|this|those|these|they|them|their|he|she|his|her|the same|"
    r"what about|how about|and the|also)\b",
    re.IGNORECASE,
)
SHORT_QUESTION_TERMS = 3  # a question this short (in index terms) is treated as a follow-up


def is_follow_up(question: str) -> bool:
    """Does the question lean on earlier turns (a reference word, or too few words of its own)?"""
    if _KOREAN_REFERENCES.search(question) or _ENGLISH_REFERENCES.search(question):
        return True
    return len(query_terms(question)) < SHORT_QUESTION_TERMS


def expand_query(question: str, history: list[tuple[str, str]], max_turns: int = 1) -> str:
    """The retrieval query: `question`, plus the last `max_turns` user turns for a follow-up.

    `history` is [(role, content), ...] oldest first, without the current question.
    """
    question = question.strip()
    if not history or not is_follow_up(question):
        return question
    previous = [content.strip() for role, content in history if role == "user" and content.strip()]
    if not previous:
        return question
    context = " ".join(previous[-max_turns:])
    return f"{question} {context}"
