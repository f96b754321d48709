"""Per-request `options.system`, `top_p`, `stop`, `seed` and the penalties on the native API:
each reaches the provider, or a provider that lacks one refuses it by name (422)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import chat_stream


def _last_request(srv: Any) -> Any:
    return srv.app.state.services.providers.get("scripted").last_request


async def test_sampling_and_the_system_prompt_reach_the_provider(live_server) -> None:
    options = {
        "system": "Answer like a Busan tour guide.",
        "top_p": 0.5,
        "stop": ["three"],
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "scripted": {"reply": "one two three four"},
    }
    async with live_server() as srv:
        result = await chat_stream(srv.url, {"message": "q", "options": options})
        request = _last_request(srv)
    assert result.types[-1] == "done"
    assert result.text == "one two "  # cut before the stop string
    assert request.messages[0].role == "system"
    assert request.messages[0].content == "Answer like a Busan tour guide."
    assert (request.top_p, request.stop, request.seed) == (0.5, ("three",), 42)
    assert (request.frequency_penalty, request.presence_penalty) == (0.5, -0.5)


async def test_the_turns_system_prompt_carries_the_grounding_with_retrieval(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        await client.post("/api/documents", json={"text": "Haeundae is a beach in Busan."})
        body = {
            "message": "Where is Haeundae?",
            "options": {"system": "You are terse.", "rag": True},
        }
        result = await chat_stream(srv.url, body)
        request = _last_request(srv)
    assert result.types[-1] == "done"
    system = request.messages[0].content
    assert system.startswith("You are terse.")
    assert "Haeundae is a beach in Busan." in system


async def test_a_provider_without_a_parameter_refuses_it_by_name(live_server) -> None:
    async with (
        live_server(anthropic_api_key="sk-ant-test") as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        body = {"message": "q", "options": {"provider": "anthropic", "top_p": 0.5}}
        response = await client.post("/api/chat/stream", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert "options.top_p" in error["message"] and "anthropic" in error["message"]


async def test_bad_values_are_422(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        for options in (
            {"top_p": 0},
            {"stop": []},
            {"stop": ["a", "b", "c", "d", "e"]},
            {"seed": -1},
            {"system": ""},
            {"frequency_penalty": 3},
        ):
            response = await client.post(
                "/api/chat/stream", json={"message": "q", "options": options}
            )
            assert response.status_code == 422, options
