"""End to end, per remote provider: `POST /api/chat/stream` on the real app (uvicorn) whose
provider talks to a small local HTTP server speaking that provider's wire protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import chat_stream
from tests.providers.remote_wire import Recorded, Reply, Transcript, WireServer, load


@dataclass(frozen=True)
class Upstream:
    provider: str
    path_suffix: str  # the request path the SDK must use
    settings: Callable[[str], dict[str, Any]]  # wire server url -> settings overrides
    model_in: Callable[[Recorded], str]  # where the requested model shows in the request


UPSTREAMS = [
    Upstream(
        "openai",
        "/v1/chat/completions",
        lambda url: {"openai_base_url": f"{url}/v1", "openai_api_key": "sk-test"},
        lambda r: str(r.json["model"]),
    ),
    Upstream(
        "anthropic",
        "/v1/messages",
        lambda url: {"anthropic_base_url": url, "anthropic_api_key": "sk-ant-test"},
        lambda r: str(r.json["model"]),
    ),
    Upstream(
        "gemini",
        ":streamGenerateContent",
        lambda url: {"gemini_base_url": url, "gemini_api_key": "AIza-test"},
        lambda r: r.path.rsplit("/", 1)[-1].split(":")[0],
    ),
]
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-pro"}


def speaking(up: Upstream, transcript: Transcript) -> Callable[[Recorded], Reply]:
    not_found = Transcript(404, "Not Found", (("content-type", "application/json"),), b"{}")

    def respond(request: Recorded) -> Reply:
        ok = request.method == "POST" and request.path.endswith(up.path_suffix)
        return Reply(transcript if ok else not_found)

    return respond


def user_text(up: Upstream, request: Recorded) -> str:
    body = request.json
    if up.provider == "gemini":
        return str(body["contents"][-1]["parts"][0]["text"])
    return str(body["messages"][-1]["content"])


@pytest.mark.parametrize("up", UPSTREAMS, ids=lambda u: u.provider)
async def test_chat_stream_through_a_local_server_speaking_the_protocol(
    live_server: Any, up: Upstream
) -> None:
    async with (
        WireServer(speaking(up, load(up.provider, "text"))) as upstream,
        live_server(
            provider=up.provider, provider_max_retries=0, **up.settings(upstream.url)
        ) as srv,
    ):
        result = await chat_stream(
            srv.url,
            {
                "message": "Say hello",
                "options": {"provider": up.provider, "model": MODELS[up.provider]},
            },
        )
    assert result.response.status_code == 200
    assert result.types[0] == "metadata"
    assert result.types[-1] == "done"
    meta = result.events[0].json
    assert meta["provider"] == up.provider
    assert meta["model"] == MODELS[up.provider]
    assert result.text == "Hello! 안녕하세요."
    done = result.last()
    assert done["finish_reason"] == "stop"
    assert done["usage"]["prompt_tokens"] > 0 and done["usage"]["completion_tokens"] > 0

    [request] = upstream.requests
    assert up.model_in(request) == MODELS[up.provider]
    assert user_text(up, request) == "Say hello"


@pytest.mark.parametrize("up", UPSTREAMS, ids=lambda u: u.provider)
async def test_error_inside_the_upstream_stream_ends_with_an_error_event(
    live_server: Any, up: Upstream
) -> None:
    async with (
        WireServer(speaking(up, load(up.provider, "midstream_error"))) as upstream,
        live_server(
            provider=up.provider, provider_max_retries=2, **up.settings(upstream.url)
        ) as srv,
    ):
        result = await chat_stream(srv.url, {"message": "Say hello"})
        session_id = result.events[0].json["session_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            history = (await client.get(f"/api/sessions/{session_id}")).json()["messages"]
    assert result.types[0] == "metadata"
    assert result.types[-1] == "error"
    assert "done" not in result.types
    assert result.text  # the partial answer reached the client and is kept
    error = result.last()
    assert error["code"] == "PROVIDER_UNAVAILABLE"
    assert error["retryable"] is True
    assert error["suggestion"]
    assert len(upstream.requests) == 1  # no retry once tokens were sent
    assert history[-1]["content"] == result.text  # the partial answer is kept


HOLD_AFTER = {"openai": 3, "anthropic": 4, "gemini": 1}  # events sent before the upstream stalls


@pytest.mark.parametrize("up", UPSTREAMS, ids=lambda u: u.provider)
async def test_client_disconnect_closes_the_upstream_connection(
    live_server: Any, up: Upstream
) -> None:
    transcript = load(up.provider, "text")

    def respond(request: Recorded) -> Reply:
        return Reply(transcript, hold_after=HOLD_AFTER[up.provider])

    async with (
        WireServer(respond) as upstream,
        live_server(
            provider=up.provider,
            provider_max_retries=0,
            disconnect_grace_s=0,  # the default grace (60 s) keeps generating
            **up.settings(upstream.url),
        ) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        seen = ""
        async with client.stream("POST", "/api/chat/stream", json={"message": "hi"}) as response:
            async for chunk in response.aiter_text():
                seen += chunk
                if "event: token" in seen:
                    break  # leave mid-answer: the app cancels, the adapter must hang up upstream
        await asyncio.wait_for(upstream.closed_while_held.wait(), timeout=30)
    assert upstream.closed_while_held.is_set()
