"""The JavaScript clients people use with OpenAI's API, against a real `tokenrelay serve`:
openai-node, the AI SDK's default `@ai-sdk/openai` provider (the Responses API) and the OpenAI
Agents SDK (tests/js, installed by `make js`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node import require_node, run_node
from tests.processes import ServerProcess, serve

STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_node()
    with serve(tmp_path_factory.mktemp("js"), "js", provider="scripted") as process:
        yield process


def test_openai_node(server: ServerProcess) -> None:
    out = run_node("openai_node.mjs", server.url)
    assert out["created"]["text"] == "Hello from tokenrelay."
    assert out["created"]["model"] == "scripted-1" and out["created"]["id"].startswith("resp_")
    stream = out["stream"]
    assert stream["types"] == STREAM_EVENTS
    assert stream["deltas"] == stream["text"] == "It is blue." and stream["status"] == "completed"
    assert out["stop"] == "one two "
    assert out["errors"]["notFound"] == {
        "cls": "NotFoundError",
        "status": 404,
        "code": "model_not_found",
    }
    assert out["errors"]["badRequest"]["cls"] == "BadRequestError"


def test_ai_sdk_openai_provider_streams_and_runs_a_tool_over_two_steps(
    server: ServerProcess,
) -> None:
    out = run_node("ai_sdk_openai.mjs", server.url)
    stream = out["stream"]
    assert stream["text"] == "Streaming works." and stream["outputTokens"] == 4
    assert stream["parts"].count("text-delta") == 4 and stream["parts"][-1] == "finish"
    generate = out["generate"]
    assert generate["calls"] == ["Seoul"] and generate["steps"] == 2
    assert generate["text"] == "It is sunny in Seoul." and generate["finishReason"] == "stop"
    assert generate["modelId"] == "scripted-1"


def test_agents_sdk_runs_a_function_tool_on_a_streamed_run(server: ServerProcess) -> None:
    out = run_node("agents_sdk.mjs", server.url)
    assert out["calls"] == ["Seoul"]
    assert out["finalOutput"] == out["text"] == "The weather in Seoul is sunny."
    assert "raw_model_stream_event" in out["eventTypes"]


@pytest.mark.model
def test_local_model_streams_to_openai_node_the_ai_sdk_and_the_agents_sdk(tmp_path: Path) -> None:
    require_node()
    with serve(tmp_path, "js-local", provider="local", local_weights="original") as process:
        node = run_node("openai_node.mjs", process.url, "local", "stream", timeout=300)
        ai = run_node("ai_sdk_openai.mjs", process.url, "local", "stream", timeout=300)
        # greedy, told to use the tool (the SDK resets tool_choice to auto after the call)
        agents = run_node("agents_sdk.mjs", process.url, "local", "required", timeout=300)

    stream = node["stream"]
    assert stream["model"] == "SmolLM2-135M-Instruct"
    assert stream["types"][:4] == STREAM_EVENTS[:4]
    assert stream["types"][-1] in ("response.completed", "response.incomplete")
    assert stream["deltas"].strip() and stream["deltas"] == stream["text"]
    assert ai["stream"]["text"].strip() and ai["stream"]["parts"][-1] == "finish"
    # the run ended (the SDK raises on `response.incomplete`): a valid call, then the answer
    assert agents["calls"] == ["Seoul"]
    assert agents["items"] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert agents["finalOutput"] == agents["text"] and "sunny" in agents["text"].lower()
