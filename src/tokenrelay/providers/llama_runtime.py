"""A small typed layer over llama-cpp-python's low-level (ctypes) API.

It owns one model, one context sized for `n_seq_max` parallel sequences, and hands out
sampler chains and batches. Everything here runs on the engine thread (`llama_engine`); none of
it is thread-safe on its own. `llama_cpp` is imported lazily with an install hint.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tokenrelay.errors import ErrorCode, ProviderError, misconfigured
from tokenrelay.i18n import tr

_INSTALL_HINT = "pip install 'tokenrelay[local]' (it brings llama-cpp-python)"
_backend_ready = False


def import_llama_cpp() -> ModuleType:
    """`llama_cpp`, or ProviderError(PROVIDER_UNAVAILABLE) that says how to install it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise misconfigured(
            ProviderError,
            tr("the local model cannot run on this server"),
            f"llama-cpp-python is not installed: {_INSTALL_HINT}, or choose another provider"
            " with --provider",
            suggestion=tr("choose another model, or tell whoever runs the server"),
            code=ErrorCode.PROVIDER_UNAVAILABLE,
        ) from e
    return llama_cpp


def _init_backend(llama: ModuleType, verbose: bool) -> None:
    global _backend_ready
    if not verbose:
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    if not _backend_ready:
        llama.llama_backend_init()
        _backend_ready = True


_FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
}


def convert_weights(source: Path, target: Path, kind: str, *, threads: int = 1) -> None:
    """Write `source` (any GGUF) to `target` with its weights re-encoded as `kind` ("q8_0",
    "f16" or "bf16") by llama.cpp's quantize routine. Blocking; a second or so for SmolLM2."""
    llama = import_llama_cpp()
    _init_backend(llama, verbose=False)
    params = llama.llama_model_quantize_default_params()
    params.ftype = getattr(llama, _FTYPES[kind])
    params.allow_requantize = True  # the source is already quantised (Q4_1)
    params.nthread = threads
    status = llama.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise misconfigured(
            ProviderError,
            tr("the local model could not be prepared"),
            f"llama.cpp could not convert {source.name} to {kind} (status {status}):"
            " set TOKENRELAY_LOCAL_WEIGHTS=original to use the file as it is",
            code=ErrorCode.PROVIDER_UNAVAILABLE,
        )


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    model_path: Path
    n_ctx_per_seq: int = 2048
    n_seq_max: int = 4
    n_batch: int = 512
    n_threads: int = 1
    n_threads_batch: int = 1
    flash_attn: bool | None = None  # None: llama.cpp decides (auto)
    kv_unified: bool = False  # False: every sequence owns n_ctx_per_seq KV cells
    verbose: bool = False


class Sampler:
    """One sequence's llama.cpp sampler chain (grammar, then temperature or greedy)."""

    def __init__(self, llama: ModuleType, handle: Any) -> None:
        self._llama = llama
        self._handle = handle

    @property
    def handle(self) -> Any:
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._llama.llama_sampler_free(self._handle)
            self._handle = None


class Batch:
    """A reusable llama_batch: add (token, position, sequence, wants-logits) rows, then decode."""

    def __init__(self, llama: ModuleType, capacity: int) -> None:
        self._llama = llama
        self.capacity = capacity
        self.raw = llama.llama_batch_init(capacity, 0, 1)
        self.size = 0

    def clear(self) -> None:
        self.size = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one row; returns its index (the index to sample from when logits=True)."""
        i = self.size
        if i >= self.capacity:
            raise RuntimeError("llama batch is full")
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq_id
        raw.logits[i] = 1 if logits else 0
        self.size = i + 1
        raw.n_tokens = self.size
        return i

    def close(self) -> None:
        if self.raw is not None:
            self._llama.llama_batch_free(self.raw)
            self.raw = None


class LlamaRuntime:
    """Model + context + vocabulary helpers. Create with `LlamaRuntime.load(config)`."""

    def __init__(self, llama: ModuleType, config: RuntimeConfig, model: Any, ctx: Any) -> None:
        self._llama = llama
        self.config = config
        self._model = model
        self._ctx = ctx
        self._vocab = llama.llama_model_get_vocab(model)
        self._memory = llama.llama_get_memory(ctx)
        self.n_vocab: int = llama.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_per_seq: int = llama.llama_n_ctx(ctx) // config.n_seq_max
        self._piece_buf = ctypes.create_string_buffer(256)

    @classmethod
    def load(cls, config: RuntimeConfig) -> LlamaRuntime:
        """Load the model and create a context; slow (reads the file), call off the loop."""
        llama = import_llama_cpp()
        _init_backend(llama, config.verbose)
        mparams = llama.llama_model_default_params()
        model = llama.llama_model_load_from_file(str(config.model_path).encode(), mparams)
        if not model:
            raise misconfigured(
                ProviderError,
                tr("the local model could not be loaded"),
                f"could not load the local model from {config.model_path}: check that the"
                " file is a GGUF model llama.cpp supports",
                code=ErrorCode.PROVIDER_UNAVAILABLE,
            )
        cparams = llama.llama_context_default_params()
        cparams.n_ctx = config.n_ctx_per_seq * config.n_seq_max
        cparams.n_batch = config.n_batch
        cparams.n_ubatch = config.n_batch
        cparams.n_seq_max = config.n_seq_max
        cparams.n_threads = config.n_threads
        cparams.n_threads_batch = config.n_threads_batch
        if config.flash_attn is not None:
            cparams.flash_attn_type = (
                llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if config.flash_attn
                else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        cparams.kv_unified = config.kv_unified
        cparams.no_perf = True
        ctx = llama.llama_init_from_model(model, cparams)
        if not ctx:
            llama.llama_model_free(model)
            raise misconfigured(
                ProviderError,
                tr("the local model could not be started"),
                "could not create a llama.cpp context for the local model: lower"
                " TOKENRELAY_LOCAL_N_CTX or TOKENRELAY_LOCAL_N_SEQ_MAX",
                code=ErrorCode.PROVIDER_UNAVAILABLE,
            )
        return cls(llama, config, model, ctx)

    # -- vocabulary

    def meta(self, key: str) -> str | None:
        size = 1 << 14
        buf = ctypes.create_string_buffer(size)
        n = self._llama.llama_model_meta_val_str(self._model, key.encode(), buf, size)
        if n < 0:
            return None
        if n >= size:
            buf = ctypes.create_string_buffer(n + 1)
            self._llama.llama_model_meta_val_str(self._model, key.encode(), buf, n + 1)
        return bytes(buf.value).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        raw = self._llama.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text (e.g. <|im_start|>) parse."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self._llama.llama_token * cap)()
        n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            cap = -n
            buf = (self._llama.llama_token * cap)()
            n = self._llama.llama_tokenize(
                self._vocab, data, len(data), buf, cap, add_special, True
            )
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render empty)."""
        buf = self._piece_buf
        n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = self._llama.llama_token_to_piece(self._vocab, token, big, -n, 0, False)
            return big.raw[:n]
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        raw = self._llama.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def bos_token(self) -> int:
        return int(self._llama.llama_vocab_bos(self._vocab))

    def eos_token(self) -> int:
        return int(self._llama.llama_vocab_eos(self._vocab))

    def is_eog(self, token: int) -> bool:
        return bool(self._llama.llama_vocab_is_eog(self._vocab, token))

    # -- sampling

    def make_sampler(
        self,
        *,
        temperature: float,
        seed: int,
        grammar: str | None,
        top_p: float | None = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
    ) -> Sampler:
        """A sampler chain: optional GBNF grammar, optional frequency/presence penalties over
        the generated tokens, then greedy (temperature 0) or top-k 40 / top-p (0.95 unless
        given) / min-p 0.05 / temperature / seeded draw."""
        llama = self._llama
        params = llama.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = llama.llama_sampler_chain_init(params)
        sampler = Sampler(llama, chain)
        if grammar is not None:
            g = llama.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
            if not g:
                sampler.close()
                raise ProviderError(
                    tr("the local model cannot follow this JSON schema"),
                    suggestion=tr("simplify the JSON schema in response_format"),
                    code=ErrorCode.VALIDATION_ERROR,
                    retryable=False,
                )
            llama.llama_sampler_chain_add(chain, g)
        if frequency_penalty or presence_penalty:
            # every generated token counts (last_n -1: the whole context), repeat off (1.0)
            penalties = llama.llama_sampler_init_penalties(
                self.n_vocab, -1, 1.0, frequency_penalty, presence_penalty
            )
            llama.llama_sampler_chain_add(chain, penalties)
        if temperature <= 0.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        else:
            p = 0.95 if top_p is None else top_p
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(40))
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(p, 1))
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(0.05, 1))
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(temperature))
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))
        return sampler

    def sample(self, sampler: Sampler, index: int) -> int:
        """Sample (and accept) the next token from the logits of batch row `index`."""
        return int(self._llama.llama_sampler_sample(sampler.handle, self._ctx, index))

    # -- decoding

    def new_batch(self, capacity: int) -> Batch:
        return Batch(self._llama, capacity)

    def decode(self, batch: Batch) -> int:
        """0 on success; llama.cpp's status code otherwise."""
        return int(self._llama.llama_decode(self._ctx, batch.raw))

    def forget(self, seq_id: int) -> None:
        """Drop every KV cell of a sequence (it left the batch)."""
        self._llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def close(self) -> None:
        if self._ctx is not None:
            self._llama.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            self._llama.llama_model_free(self._model)
            self._model = None
