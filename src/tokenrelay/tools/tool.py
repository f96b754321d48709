"""`@tool`: a typed Python function as a `Tool` the model may call.

`@tool` turns a typed Python function (sync, async, or an async generator that yields
`Progress`) into a `Tool`: the name is the function's, the description the docstring's first
paragraph, and the JSON schema of its arguments comes from the type hints (through a pydantic
model, which also validates the model's arguments before the call). Parameter descriptions come
from the docstring's `Args:` section or from `Annotated[..., Field(description=...)]`. A
parameter annotated `ToolContext` is filled in by the runner and is not part of the schema.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, create_model

from tokenrelay.providers.base import ToolSpec
from tokenrelay.tools.context import ToolContext

ToolKind = Literal["sync", "async", "asyncgen"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with its spec and its argument model."""

    name: str
    description: str
    fn: Callable[..., Any]
    arguments: type[BaseModel]
    parameters: dict[str, Any]
    kind: ToolKind
    context_param: str | None = None

    @functools.cached_property
    def spec(self) -> ToolSpec:
        """Made once: every turn that offers tools offers it (its parameters are not to be
        changed by whoever is given them)."""
        return ToolSpec(self.name, self.description, self.parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in tests and scripts)."""
        return self.fn(*args, **kwargs)

    def bind(self, arguments: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
        """Validated keyword arguments for a call; raises pydantic.ValidationError."""
        model = self.arguments.model_validate(dict(arguments))
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        if self.context_param is not None:
            kwargs[self.context_param] = context
        return kwargs


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a typed function: `@tool` or `@tool(name=..., description=...)`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, name=name, description=description)

    return wrap if fn is None else wrap(fn)


def make_tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> Tool:
    tool_name = name or fn.__name__
    if not _NAME.match(tool_name):
        raise ValueError(
            f"tool name {tool_name!r} is not usable: use letters, digits, _ or -, at most 64"
        )
    summary, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *args and **kwargs are not supported; name them")
        hint = hints.get(param.name)
        if hint is None:
            raise TypeError(f"tool {tool_name}: parameter {param.name!r} needs a type hint")
        if _is_context(hint):
            context_param = param.name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        doc = arg_docs.get(param.name)
        fields[param.name] = (hint, Field(default, description=doc) if doc else default)
    model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    kind: ToolKind = "sync"
    if inspect.isasyncgenfunction(fn):
        kind = "asyncgen"
    elif inspect.iscoroutinefunction(fn):
        kind = "async"
    return Tool(
        name=tool_name,
        description=(description or summary or tool_name).strip(),
        fn=fn,
        arguments=model,
        parameters=clean_schema(model.model_json_schema()),
        kind=kind,
        context_param=context_param,
    )


def _is_context(hint: Any) -> bool:
    if hint is ToolContext:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(a is ToolContext for a in typing.get_args(hint))
    return False


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {param: description}) from a Google-style docstring."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if stripped.endswith(":") and not line.startswith((" ", "\t")):
            in_args = False  # next section (Returns:, Raises:)
            continue
        match = _ARG_LINE.match(line)
        if match and not stripped.startswith("-"):
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif stripped and current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return summary, args


def clean_schema(schema: Any, *, in_properties: bool = False) -> Any:
    """Drop pydantic's generated `title`s (noise for the model); keep property names as they are."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "title" and not in_properties and isinstance(value, str):
                continue
            out[key] = clean_schema(value, in_properties=key in ("properties", "$defs"))
        return out
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def collect_tools(source: Any) -> list[Tool]:
    """Tools in `source`: a Tool, a module (its Tool attributes) or an iterable of them."""
    if isinstance(source, Tool):
        return [source]
    if isinstance(source, types.ModuleType):
        return [v for v in vars(source).values() if isinstance(v, Tool)]
    if isinstance(source, Iterable) and not isinstance(source, str | bytes):
        found: list[Tool] = []
        for item in source:
            found.extend(collect_tools(item))
        return found
    raise TypeError(f"{source!r} is not a tool, a module of tools or a list of tools")
