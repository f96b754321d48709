"""The real bundled model (SmolLM2-135M-Instruct via llama.cpp) behind the real server."""

from __future__ import annotations

import pytest

from tests.helpers import chat_stream

pytestmark = pytest.mark.model


async def test_local_model_answers_with_done_and_real_usage(live_server) -> None:
    async with live_server(provider="local") as srv:
        result = await chat_stream(
            srv.url,
            {
                "message": "What is the capital of France?",
                "options": {"max_tokens": 24, "temperature": 0},
            },
            timeout=120,
        )
    assert result.types[0] == "metadata"
    meta = result.events[0].json
    assert meta["provider"] == "local"
    assert meta["model"] == "SmolLM2-135M-Instruct"
    assert result.types[-1] == "done", result.last()
    done = result.last()
    assert result.text.strip()
    assert done["finish_reason"] in ("stop", "length")
    usage = done["usage"]
    # real counts from the tokenizer: the chat template alone is a few dozen tokens
    assert usage["prompt_tokens"] > 10
    assert 1 <= usage["completion_tokens"] <= 24
    assert done["total_chunks"] >= 1
    assert done["ttft_s"] is not None and done["ttft_s"] > 0
