"""Gemini embeddings (`models/{model}:batchEmbedContents`) with the `google-genai` SDK.

Questions and passages are sent with their task types (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT),
which Gemini's embedding models are trained for. Gemini returns vectors of its full size
unless `output_dimensionality` asks for fewer; below the full size they are not unit length,
so every vector is normalized here (as all embedders do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import httpx

from tokenrelay.errors import ProviderError, misconfigured
from tokenrelay.retrieval.embedding import (
    EMBEDDINGS_DOWN,
    EmbeddingFailed,
    EmbedKind,
    ServedEmbedder,
    Vector,
)

DEFAULT_MODEL = "gemini-embedding-001"
_TASK: dict[EmbedKind, str] = {"query": "RETRIEVAL_QUERY", "passage": "RETRIEVAL_DOCUMENT"}


class GeminiEmbedder(ServedEmbedder):
    def __init__(
        self,
        *,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 100,  # the API's limit per batch request
        timeout_s: float = 60.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        try:
            from google import genai
            from google.genai import types
        except ImportError as e:
            raise misconfigured(
                ProviderError,
                EMBEDDINGS_DOWN,
                "Gemini embeddings need the google-genai package: pip install 'tokenrelay[gemini]'",
            ) from e
        if not api_key:
            raise misconfigured(
                ProviderError,
                EMBEDDINGS_DOWN,
                "Gemini embeddings need an API key: set GEMINI_API_KEY"
                " (or TOKENRELAY_EMBEDDING_API_KEY)",
            )
        super().__init__(model=model, dimensions=dimensions, batch_size=batch_size)
        self._types = types
        self._errors = genai.errors
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout_s * 1000),
                retry_options=types.HttpRetryOptions(attempts=max_retries + 1),
                httpx_async_client=self._http,
            ),
        )

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        if not texts:
            return []
        config = self._types.EmbedContentConfig(
            task_type=_TASK[kind], output_dimensionality=self._dimensions
        )
        try:
            response = await self._client.aio.models.embed_content(
                model=self._model, contents=cast(Any, list(texts)), config=config
            )
        except self._errors.APIError as e:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"Gemini embeddings failed: {e.code} {e.message or e}: check GEMINI_API_KEY and"
                " TOKENRELAY_EMBEDDING_MODEL",
            ) from e
        except httpx.TransportError as e:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"Gemini could not be reached: {e}: check the network, or"
                " TOKENRELAY_EMBEDDING_BASE_URL",
                retryable=True,
            ) from e
        vectors = [list(e.values or []) for e in response.embeddings or []]
        return self._accepted(vectors, len(texts))

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()
