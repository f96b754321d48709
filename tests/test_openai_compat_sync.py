"""The sync `openai` SDK against a real `tokenrelay serve` process (it needs a loop of its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.server_process import ServerProcess, tokenrelay_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with tokenrelay_serve(Path(tmp_path_factory.mktemp("openai-sync"))) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_sync_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "부산에 대해 알려줘"}]
    )
    assert completion.choices[0].message.content == (
        "This is tokenrelay's scripted answer to: 부산에 대해 알려줘"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_sync_stream_with_usage(client: openai.OpenAI) -> None:
    with client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"tokenrelay": {"scripted": {"reply": "a b c d"}}},
    ) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c d"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_sync_stream_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        stream=True,
        extra_body={
            "tokenrelay": {
                "scripted": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Jeju"}}]}
            }
        },
    ) as stream:
        chunks = list(stream)
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [
        (tc.function.name, json.loads(tc.function.arguments or "")) for tc in calls if tc.function
    ] == [("get_weather", {"city": "Jeju"})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_sync_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="scripted", messages=[{"role": "user"}])  # type: ignore[typeddict-item]
    assert bad.value.code == "VALIDATION_ERROR"
    with pytest.raises(openai.APIError) as mid_stream:
        for _ in client.chat.completions.create(
            model="scripted",
            messages=[{"role": "tool", "content": "x"}],  # type: ignore[list-item,misc]
            stream=True,
        ):
            pass
    assert isinstance(mid_stream.value, openai.BadRequestError)
    assert mid_stream.value.body["param"] == "messages.0.tool_call_id"  # type: ignore[index]


def test_sync_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "scripted" and "scripted/scripted-1" in ids
