"""`@tool` schema generation, the registry, the runner's error mapping and plugin loading."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from typing import Annotated, Literal

import pytest
from pydantic import Field

from tests.tools import sample_tools
from tokenrelay.config import Settings
from tokenrelay.errors import ValidationError
from tokenrelay.providers.base import ToolCall
from tokenrelay.tools import ToolContext, ToolRegistry, tool
from tokenrelay.tools.registry import registry_for
from tokenrelay.tools.runner import run_tool
from tokenrelay.tools.tool import clean_schema, collect_tools, parse_docstring


@tool
def book_table(
    restaurant: str,
    people: Annotated[int, Field(ge=1, le=20)],
    ctx: ToolContext,
    time: str = "19:00",
    seating: Literal["inside", "terrace"] = "inside",
    notes: str | None = None,
) -> dict[str, object]:
    """Book a table at a restaurant.

    Longer explanation that is not part of the description.

    Args:
        restaurant: the restaurant's name
        people: how many guests
        time: when, as HH:MM
            (24-hour clock)
        seating: where to sit

    Returns:
        the booking
    """
    return {"restaurant": restaurant, "people": people, "time": time, "call": ctx.call_id}


def test_schema_from_type_hints_and_docstring() -> None:
    assert book_table.name == "book_table"
    assert book_table.description == "Book a table at a restaurant."
    assert book_table.kind == "sync"
    assert book_table.context_param == "ctx"
    schema = book_table.parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["restaurant", "people"]
    props = schema["properties"]
    assert list(props) == ["restaurant", "people", "time", "seating", "notes"]  # no ctx
    assert props["restaurant"] == {"type": "string", "description": "the restaurant's name"}
    assert props["people"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 20,
        "description": "how many guests",
    }
    assert props["time"]["description"] == "when, as HH:MM (24-hour clock)"
    assert props["time"]["default"] == "19:00"
    assert props["seating"]["enum"] == ["inside", "terrace"]
    assert "title" not in schema and all("title" not in p for p in props.values())
    spec = book_table.spec
    assert (spec.name, spec.description, spec.parameters) == (
        "book_table",
        "Book a table at a restaurant.",
        schema,
    )


def test_kinds_and_names() -> None:
    assert sample_tools.meet.kind == "async"
    assert sample_tools.steps.kind == "asyncgen"
    assert sample_tools.echo_text.name == "echo"
    assert sample_tools.echo_text.description == "Echo the text back."
    assert sample_tools.echo_text(text="hi") == {"echo": "hi"}  # still callable


def test_bad_tool_definitions_say_the_fix() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="needs a type hint"):
        tool(untyped)

    def star(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match=r"\*args"):
        tool(star)
    with pytest.raises(ValueError, match="not usable"):
        tool(name="has space")(star)


def test_parse_docstring_and_clean_schema_keep_a_property_named_title() -> None:
    summary, args = parse_docstring("Do it.\n\nArgs:\n    a (int): first\n    b: second\n")
    assert summary == "Do it." and args == {"a": "first", "b": "second"}
    cleaned = clean_schema(
        {"title": "X", "properties": {"title": {"type": "string", "title": "Title"}}}
    )
    assert cleaned == {"properties": {"title": {"type": "string"}}}


def test_registry_specs_allow_list_and_check() -> None:
    registry = ToolRegistry([book_table, sample_tools.echo_text])
    assert registry.names() == ["book_table", "echo"]
    assert [s.name for s in registry.specs()] == ["book_table", "echo"]
    assert [s.name for s in registry.specs(["echo"])] == ["echo"]
    with pytest.raises(ValidationError) as err:
        registry.check(["echo", "nope"])
    assert "nope" in err.value.message and "book_table" in err.value.suggestion

    def other(text: str) -> str:
        return text

    with pytest.raises(ValueError, match="already registered"):
        registry.add(tool(name="echo")(other))


def test_default_registry_has_the_builtins_and_configured_modules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = registry_for(Settings(data_dir=tmp_path, tool_modules=["tests.tools.sample_tools"]))
    for name in ("get_weather", "convert_units", "calculate", "current_time", "search_documents"):
        assert name in registry
    assert "meet" in registry and "echo" in registry
    plain = registry_for(Settings(data_dir=tmp_path))
    assert "meet" not in plain


def test_entry_points_load_tools_and_skip_broken_plugins(caplog) -> None:  # type: ignore[no-untyped-def]
    group = "tokenrelay.tools"
    registry = ToolRegistry()
    added = registry.load_entry_points(
        [
            EntryPoint("echo", "tests.tools.sample_tools:echo_text", group),
            EntryPoint("samples", "tests.tools.sample_tools", group),
            EntryPoint("broken", "tests.tools.no_such_module:thing", group),
        ]
    )
    assert "echo" in added and "meet" in registry and "boom" in registry
    assert "broken" in caplog.text and "fix or uninstall" in caplog.text
    assert collect_tools([sample_tools.boom, [sample_tools.hang]]) == [
        sample_tools.boom,
        sample_tools.hang,
    ]


def _ctx() -> ToolContext:
    return ToolContext(settings=Settings(), call_id="c1")


async def test_runner_maps_every_failure_to_an_error_result() -> None:
    ctx = _ctx()

    async def run(t, args, timeout=5.0):  # type: ignore[no-untyped-def]
        return await run_tool(
            t, ToolCall("c1", getattr(t, "name", "x"), args), ctx, timeout_s=timeout
        )

    ok = await run(book_table, {"restaurant": "Mingles", "people": "4"})
    assert ok.ok and ok.result == {
        "restaurant": "Mingles",
        "people": 4,
        "time": "19:00",
        "call": "c1",
    }
    bad_args = await run(book_table, {"restaurant": "Mingles", "people": 99, "extra": 1})
    assert bad_args.outcome == "invalid_arguments"
    assert "people" in (bad_args.error or "") and "extra" in (bad_args.error or "")
    raised = await run(sample_tools.boom, {"reason": "disk on fire"})
    assert raised.outcome == "error" and "RuntimeError: disk on fire" in (raised.error or "")
    hung = await run(sample_tools.hang, {}, timeout=0.05)
    assert hung.outcome == "timeout" and "was stopped" in (hung.error or "")
    junk = await run(sample_tools.unserialisable, {})
    assert junk.outcome == "bad_result" and "not JSON" in (junk.error or "")
    unknown = await run_tool(None, ToolCall("c2", "nope", {}), ctx, timeout_s=1, available=["a"])
    assert unknown.outcome == "unknown_tool" and "nope" in (unknown.error or "")
    assert '"error"' in unknown.content()


async def test_generator_progress_reaches_the_callback() -> None:
    seen: list[str] = []

    async def progress(message: str) -> None:
        seen.append(message)

    ctx = ToolContext(settings=Settings(), call_id="c1", on_progress=progress)
    outcome = await run_tool(
        sample_tools.steps, ToolCall("c1", "steps", {"count": 3}), ctx, timeout_s=5
    )
    assert outcome.result == {"steps": 3}
    assert seen == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]


async def test_cancellation_is_not_swallowed() -> None:
    task = asyncio.create_task(
        run_tool(sample_tools.hang, ToolCall("c1", "hang", {}), _ctx(), timeout_s=60)
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
