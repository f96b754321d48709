"""The OpenAI Agents SDK (Python, `openai-agents`) against a real `tokenrelay serve`: an agent
with a function tool on `Runner.run_streamed`, over the Responses API, with the scripted
provider and, for one streaming case, the local model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    ModelBehaviorError,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    RunResultStreaming,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.processes import ServerProcess, serve

set_tracing_disabled(True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve(tmp_path_factory.mktemp("agents"), "agents", provider="scripted") as process:
        yield process


def weather_agent(url: str, model: str, settings: ModelSettings, calls: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return f"sunny in {city}"

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    return Agent(
        name="Weather",
        instructions="Use the get_weather tool to answer questions about the weather.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=settings,
        tools=[get_weather],
    )


async def run_streamed(agent: Agent, question: str) -> tuple[RunResultStreaming, dict[str, Any]]:
    """Run `agent` streamed, to the end; what its stream showed."""
    result = Runner.run_streamed(agent, question)
    seen: dict[str, Any] = {"types": [], "raw": [], "items": [], "text": ""}
    async for event in result.stream_events():
        seen["types"].append(event.type)
        if event.type == "raw_response_event":
            seen["raw"].append(event.data.type)
            if event.data.type == "response.output_text.delta":
                seen["text"] += event.data.delta
        elif event.type == "run_item_stream_event":
            seen["items"].append(event.item.type)
    return result, seen


async def test_agent_runs_a_function_tool_on_run_streamed(server: ServerProcess) -> None:
    calls: list[str] = []
    scripted = {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Seoul"}}],
        "reply": "The weather in Seoul is sunny.",
    }
    settings = ModelSettings(extra_body={"tokenrelay": {"scripted": scripted}})
    agent = weather_agent(server.url, "scripted", settings, calls)

    result, seen = await run_streamed(agent, "What is the weather in Seoul?")

    assert calls == ["Seoul"]
    assert result.is_complete and result.final_output == "The weather in Seoul is sunny."
    assert seen["text"] == "The weather in Seoul is sunny."
    assert seen["items"] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert seen["types"][0] == "agent_updated_stream_event"
    # two model responses, each a full Responses stream
    assert seen["raw"].count("response.created") == seen["raw"].count("response.completed") == 2
    assert "response.function_call_arguments.done" in seen["raw"]
    call = next(i for i in result.new_items if i.type == "tool_call_item")
    assert json.loads(call.raw_item.arguments) == {"city": "Seoul"}
    assert result.raw_responses[-1].response_id.startswith("resp_")
    assert result.context_wrapper.usage.requests == 2


async def test_an_answer_cut_at_max_output_tokens_ends_the_run_as_with_openai(
    server: ServerProcess,
) -> None:
    """A truncated answer is OpenAI's `response.incomplete` (status `incomplete`, reason
    `max_output_tokens`, the message item `incomplete`), on which the SDK raises."""
    scripted = {"reply": "ab cd ef gh ij kl ", "tokens": 6}
    settings = ModelSettings(max_tokens=3, extra_body={"tokenrelay": {"scripted": scripted}})
    agent = weather_agent(server.url, "scripted", settings, [])
    result = Runner.run_streamed(agent, "Count.")
    raw: list[Any] = []
    with pytest.raises(ModelBehaviorError, match=r"response\.incomplete"):
        async for event in result.stream_events():
            if event.type == "raw_response_event":
                raw.append(event.data)

    last = raw[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == "ab cd ef "
    item_done = next(e for e in raw if e.type == "response.output_item.done")
    assert item_done.item.status == "incomplete"


@pytest.mark.model
async def test_local_model_runs_the_agent_to_the_end(tmp_path: Path) -> None:
    """SmolLM2-135M with a function tool, greedy: the runs end, without raising, in a final
    answer. Left to choose (`auto`), it answers directly; told to use the tool (`required`,
    which the SDK resets to `auto` after the call) its call is valid, and it answers from the
    tool's output."""
    greedy = ModelSettings(temperature=0)
    required = ModelSettings(temperature=0, tool_choice="required")
    question = "What is the weather in Seoul?"
    runs: dict[str, tuple[RunResultStreaming, dict[str, Any], list[str]]] = {}
    with serve(tmp_path, "agents-local", provider="local", local_weights="original") as process:
        for name, settings in (("auto", greedy), ("required", required)):
            calls: list[str] = []
            agent = weather_agent(process.url, "local", settings, calls)
            result, seen = await run_streamed(agent, question)
            runs[name] = result, seen, calls

    for result, seen, calls in runs.values():
        assert result.is_complete
        assert isinstance(result.final_output, str) and result.final_output.strip()
        assert seen["text"].endswith(result.final_output)
        assert seen["items"][-1] == "message_output_item"
        assert seen["raw"][-1] == "response.completed"
        assert len(calls) == seen["items"].count("tool_call_output_item")

    result, seen, calls = runs["required"]
    assert calls == ["Seoul"]
    assert seen["items"] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert "sunny" in result.final_output.lower()
