"""The local provider against the real bundled SmolLM2-135M model (llama.cpp).

One engine for the whole session (`local_provider`), small contexts and small max_tokens so
the file stays fast on a busy machine. Greedy decoding (temperature 0) makes outputs
reproducible, which is what the no-cross-talk tests compare.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.providers.base import (
    ChatMessage,
    Finish,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallPart,
    ToolSpec,
    Usage,
)
from tokenrelay.providers.local import LocalProvider
from tokenrelay.providers.model_files import (
    WeightsKind,
    bundled_model_path,
    converted_path,
)
from tokenrelay.providers.weights_auto import CHOICE_FILE

pytestmark = pytest.mark.model

N_CTX = 512


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data") / "models"


@pytest.fixture(scope="session")
def local_provider(model_cache: Path) -> Iterator[LocalProvider]:
    # default weights: the bundled file converted once (see model_files.prepare_weights)
    provider = LocalProvider(n_ctx=N_CTX, n_seq_max=4, max_tokens=32, seed=7, cache_dir=model_cache)
    provider.load()
    yield provider
    provider.close()


def ask(
    text: str,
    *,
    max_tokens: int,
    response_format: dict[str, Any] | None = None,
    tools: tuple[ToolSpec, ...] = (),
    tool_choice: str | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        messages=(ChatMessage("user", text),),
        temperature=0,
        max_tokens=max_tokens,
        response_format=response_format,
        tools=tools,
        tool_choice=tool_choice,
    )


async def collect(provider: LocalProvider, request: ProviderRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def wait_until_idle(provider: LocalProvider) -> None:
    """Let the engine thread observe what the test did (no timing claims, just a bound)."""
    engine = provider.load()
    for _ in range(500):
        if engine.busy() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not become idle")


async def test_short_question_gets_text_usage_and_finish(local_provider: LocalProvider) -> None:
    events = await collect(local_provider, ask("What is 2+2?", max_tokens=24))
    assert text_of(events).strip()
    usage, finish = events[-2], events[-1]
    assert isinstance(usage, Usage)
    assert isinstance(finish, Finish)
    assert finish.reason in ("stop", "length")


async def test_usage_counts_are_the_real_token_counts(local_provider: LocalProvider) -> None:
    request = ask("What is 2+2?", max_tokens=24)
    expected_prompt = await asyncio.to_thread(local_provider.tokenize_prompt, request.messages)
    events = await collect(local_provider, request)
    usage = next(e for e in events if isinstance(e, Usage))
    record = local_provider.stats.recent[-1]
    assert usage.prompt_tokens == len(expected_prompt) == record.prompt_tokens
    assert usage.completion_tokens == len(record.tokens) > 0
    runtime = local_provider.load().runtime
    generated = b"".join(runtime.piece(t) for t in record.tokens).decode("utf-8")
    assert generated == text_of(events)


def greedy_direct(model_file: Path, prompt: str, max_tokens: int) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_file), n_ctx=N_CTX, verbose=False)
    try:
        direct: Any = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    finally:
        llm.close()
    return str(direct["choices"][0]["text"])


async def test_greedy_output_matches_llama_cpp_python_directly(
    local_provider: LocalProvider,
) -> None:
    # the model's chat template, our tokenisation and our sampling give the very tokens the
    # library's own high-level API gives for the same rendered prompt on the same weights
    request = ask("What is the capital of France?", max_tokens=12)
    prompt = local_provider.format_prompt(request.messages)
    ours = text_of(await collect(local_provider, request))
    assert local_provider.model_file is not None
    assert ours == greedy_direct(local_provider.model_file, prompt, 12)


def test_default_weights_are_what_this_machine_runs_fastest(
    local_provider: LocalProvider, model_cache: Path
) -> None:
    """`auto` timed the bundled file and its F16 conversion at the first load, loaded the
    faster one, and kept the choice (and no file it does not use) in the cache."""
    source = bundled_model_path()
    [entry] = json.loads((model_cache / CHOICE_FILE).read_text()).values()
    chosen = entry["weights"]
    timings = entry["timings"]
    assert set(timings) == {"original", "f16"}
    assert all(set(t["steps"]) == {"1", "4"} for t in timings.values())
    assert all(t["steps"]["1"] > 0 and t["steps"]["4"] > 0 for t in timings.values())
    assert local_provider.weights == chosen
    if chosen == "original":
        assert local_provider.model_file == source
        assert [p.name for p in model_cache.iterdir()] == [CHOICE_FILE]
    else:
        assert chosen == "f16"
        assert local_provider.model_file == converted_path(source, "f16", model_cache)
        names = sorted(p.name for p in model_cache.iterdir())
        assert names == sorted([CHOICE_FILE, local_provider.model_file.name])


@pytest.mark.parametrize("weights", ["original", "q8_0", "f16"])
async def test_other_weights_also_match_llama_cpp_python(
    weights: WeightsKind, tmp_path: Path
) -> None:
    provider = LocalProvider(n_ctx=N_CTX, n_seq_max=1, weights=weights, cache_dir=tmp_path)
    try:
        await asyncio.to_thread(provider.load)
        assert provider.model_file is not None
        if weights == "original":
            assert provider.model_file == bundled_model_path()
        request = ask("Name a color.", max_tokens=10)
        ours = text_of(await collect(provider, request))
        prompt = provider.format_prompt(request.messages)
        assert ours and ours == greedy_direct(provider.model_file, prompt, 10)
    finally:
        await provider.aclose()


async def test_end_of_turn_finishes_with_stop(local_provider: LocalProvider) -> None:
    events = await collect(
        local_provider, ask("Reply with one word: yes or no. Is the sky blue?", max_tokens=24)
    )
    usage, finish = events[-2], events[-1]
    assert isinstance(usage, Usage) and isinstance(finish, Finish)
    assert finish.reason == "stop"
    assert 0 < usage.completion_tokens < 24


async def test_max_tokens_finishes_with_length(local_provider: LocalProvider) -> None:
    events = await collect(local_provider, ask("Say hello.", max_tokens=5))
    assert events[-1] == Finish("length")
    usage = events[-2]
    assert isinstance(usage, Usage) and usage.completion_tokens == 5


async def test_korean_text_is_never_broken(local_provider: LocalProvider) -> None:
    # Hangul syllables are 3 UTF-8 bytes, split over several byte-level tokens: deltas must
    # only ever carry whole characters, also when max_tokens cuts inside a character.
    prompt = "Repeat exactly: 안녕하세요 여러분"
    full = await collect(local_provider, ask(prompt, max_tokens=24))
    assert "안녕하세요" in text_of(full)
    cuts = await asyncio.gather(
        *(collect(local_provider, ask(prompt, max_tokens=n)) for n in range(5, 10))
    )
    for events in [full, *cuts]:
        assert all("\ufffd" not in e.text for e in events if isinstance(e, TextDelta))
    runtime = local_provider.load().runtime
    pieces = [runtime.piece(t) for t in runtime.tokenize("안녕하세요")]
    assert any(not _is_utf8(p) for p in pieces), "expected Korean to span byte tokens"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def test_closing_the_stream_stops_generation(local_provider: LocalProvider) -> None:
    before = local_provider.cancelled_count
    stream = local_provider.stream(ask("Tell me a long story about a dragon.", max_tokens=200))
    assert isinstance(stream, AsyncGenerator)
    seen = 0
    async for event in stream:
        if isinstance(event, TextDelta):
            seen += 1
            if seen == 3:
                break
    await stream.aclose()
    await wait_until_idle(local_provider)
    assert local_provider.cancelled_count == before + 1
    record = local_provider.stats.recent[-1]
    assert record.reason == "cancelled"
    assert len(record.tokens) < 200
    # the engine is free for the next request
    events = await collect(local_provider, ask("What is 2+2?", max_tokens=8))
    assert isinstance(events[-1], Finish)


async def test_cancelling_the_consumer_task_stops_generation(
    local_provider: LocalProvider,
) -> None:
    before = local_provider.cancelled_count
    first_token = asyncio.Event()

    async def consume() -> None:
        async for event in local_provider.stream(ask("Write a poem.", max_tokens=200)):
            if isinstance(event, TextDelta):
                first_token.set()

    task = asyncio.create_task(consume())
    await first_token.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_idle(local_provider)
    assert local_provider.cancelled_count == before + 1
    assert local_provider.stats.recent[-1].reason == "cancelled"


async def test_concurrent_requests_do_not_corrupt_each_other(tmp_path: Path) -> None:
    """Each request's greedy answer is the same alone and decoded alongside four others.

    On F16 weights: with the bundled Q4_1 file llama.cpp multiplies a batch of many rows
    with other kernels than a short one, and near-ties in the logits then flip (3 of 40
    answers in one probe), which is rounding, not one sequence reading another's state
    (docs/providers.md, "Weights"). F16 gave the same answers every time, so a difference
    here is corruption."""
    provider = LocalProvider(
        n_ctx=N_CTX, n_seq_max=4, max_tokens=32, seed=7, weights="f16", cache_dir=tmp_path
    )
    await asyncio.to_thread(provider.load)
    # five different prompts, one more than the 4 sequence slots, so one also queues
    prompts = [
        "What is 2+2?",
        "Name a color.",
        "What is the capital of France?",
        "Say hello.",
        "Repeat exactly: 안녕하세요 여러분",
    ]
    try:
        alone = [text_of(await collect(provider, ask(p, max_tokens=16))) for p in prompts]
        together = await asyncio.gather(
            *(collect(provider, ask(p, max_tokens=16)) for p in prompts)
        )
        assert [text_of(events) for events in together] == alone
        assert provider.stats.max_batch_sequences >= 2
    finally:
        await provider.aclose()


async def test_prompt_too_long_for_the_context(local_provider: LocalProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await collect(local_provider, ask("word " * 600, max_tokens=16))
    assert info.value.code == ErrorCode.CONTEXT_TOO_LONG
    assert info.value.suggestion


async def test_json_schema_output_parses(local_provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
        },
        "required": ["city", "population"],
    }
    request = ask(
        "Give the biggest city of Japan and its population.",
        max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"schema": schema}},
    )
    events = await collect(local_provider, request)
    assert events[-1] == Finish("stop")
    data = json.loads(text_of(events))
    assert isinstance(data["city"], str)
    assert isinstance(data["population"], int)


async def test_json_object_output_parses(local_provider: LocalProvider) -> None:
    request = ask("Describe a cat as JSON.", max_tokens=64, response_format={"type": "json_object"})
    events = await collect(local_provider, request)
    if events[-1] == Finish("stop"):
        assert isinstance(json.loads(text_of(events)), dict)
    else:  # cut by max_tokens: still a well-formed JSON prefix
        assert text_of(events).startswith("{")


WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    },
)


async def test_required_tool_call_is_well_formed(local_provider: LocalProvider) -> None:
    weather = WEATHER
    request = ask(
        "What is the weather in Paris?", max_tokens=48, tools=(weather,), tool_choice="required"
    )
    events = await collect(local_provider, request)
    calls = [e.call for e in events if isinstance(e, ToolCallPart)]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert isinstance(calls[0].arguments["city"], str)
    assert events[-1] == Finish("tool_calls")


async def test_auto_tool_mode_is_a_tool_call_or_a_streamed_answer(
    local_provider: LocalProvider,
) -> None:
    weather = WEATHER
    for question in ("What is the weather in Paris?", "Say hello to me."):
        request = ask(question, max_tokens=48, tools=(weather,), tool_choice="auto")
        events = await collect(local_provider, request)
        finish = events[-1]
        assert isinstance(finish, Finish)
        calls = [e.call for e in events if isinstance(e, ToolCallPart)]
        if calls:
            assert finish.reason == "tool_calls"
            assert [c.name for c in calls] == ["get_weather"]
            assert not text_of(events)
        else:
            assert finish.reason in ("stop", "length")
            assert not text_of(events).lstrip().startswith("{")  # the answer, not its JSON


async def test_after_the_tool_results_it_answers_from_them(
    local_provider: LocalProvider,
) -> None:
    """`auto` once the turn holds results: a plain answer that ends, not the same call again
    (which SmolLM2-135M makes when it is shown its tools again)."""
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    messages = (
        ChatMessage("user", "What is the weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny, 21 degrees", tool_call_id="call_1"),
    )
    request = ask("", max_tokens=48, tools=(WEATHER,), tool_choice="auto")
    events = await collect(local_provider, replace(request, messages=messages))
    assert not [e for e in events if isinstance(e, ToolCallPart)]
    assert events[-1] == Finish("stop")
    assert "sunny" in text_of(events).lower()


async def test_a_call_cut_by_max_tokens_is_no_call(local_provider: LocalProvider) -> None:
    """Cut inside the call: no call, no text, and `length` (OpenAI's `incomplete`)."""
    request = ask(
        "What is the weather in Paris?", max_tokens=6, tools=(WEATHER,), tool_choice="required"
    )
    events = await collect(local_provider, request)
    assert not [e for e in events if isinstance(e, ToolCallPart)] and not text_of(events)
    assert events[-1] == Finish("length")


async def test_stop_strings_cut_the_answer_also_across_tokens(
    local_provider: LocalProvider,
) -> None:
    """`stop` ends the answer before the stop string, whichever tokens carry it."""
    plain = text_of(await collect(local_provider, ask("Count from one to ten.", max_tokens=24)))
    assert len(plain) > 12
    stop = plain[5:11]  # six characters from the middle: most often more than one token
    request = ask("Count from one to ten.", max_tokens=24)
    events = await collect(local_provider, replace(request, stop=(stop, "never-said")))
    assert text_of(events) == plain[: plain.find(stop)]
    assert events[-1] == Finish("stop")


async def test_seed_top_p_and_penalties_are_honoured(local_provider: LocalProvider) -> None:
    base = replace(ask("Tell me a story.", max_tokens=12), temperature=1.0, top_p=0.9)
    first = text_of(await collect(local_provider, replace(base, seed=11)))
    again = text_of(await collect(local_provider, replace(base, seed=11)))
    assert first == again  # the same seed draws the same tokens
    penalised = replace(base, seed=11, frequency_penalty=1.5, presence_penalty=1.5)
    assert text_of(await collect(local_provider, penalised))
