"""Query strings: a request model read from one, and unknown parameters refused on every route.

`QueryForm(ChatRequest, flatten="options")` reads `GET /api/chat/stream?message=…` into the
same `ChatRequest` that `POST /api/chat/stream` reads from its JSON body. The parameters are
made from the model's fields, so the two forms cannot drift (docs/protocol.md, "The query
form"):

- a field by its name or its camelCase spelling: `session_id`, `sessionId`;
- a field of a flattened nested model by its own name, or under the nested field's name:
  `max_tokens`, `maxTokens`, `options.max_tokens`, `options.maxTokens`;
- a list as the parameter repeated: `tools=clock&tools=calculate`;
- an object-valued field as JSON text: `rag={"top_k":3}`, `scripted={"reply":"hi"}`; where
  the field also takes a plain value, that value as it is: `rag=false`;
- anything else as pydantic reads text: booleans `true`/`false`/`1`/`0`, numbers, strings.

An unknown parameter, one field given in two spellings, and a non-list parameter given twice
are 422 VALIDATION_ERROR, in the shape a JSON body's errors have; the protocol's own
parameters (`query_check.RESERVED`) pass. As a dependency, a form tells `CheckedRoute` the
parameters it reads (`query_names`), so the route refuses the others (server/query_check.py).
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.requests import Request

from tokenrelay.server.error_responses import validation_error
from tokenrelay.server.json_checks import check_json_value, too_deep
from tokenrelay.server.query_check import RESERVED, query_error
from tokenrelay.spelling import SPELLING_CONFLICT, explain_spellings, spellings

M = TypeVar("M", bound=BaseModel)
_SEQUENCES = (list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one parameter goes in the model's input, and how its text is read."""

    path: tuple[str, ...]  # ("options", "max_tokens")
    many: bool  # a list: the parameter repeats
    json: bool  # object-valued: JSON text
    field: FieldInfo


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _is_object(annotation: Any) -> bool:
    kind = get_origin(annotation) or annotation
    if annotation is Any:
        return True
    return isinstance(kind, type) and (issubclass(kind, BaseModel) or issubclass(kind, dict))


def _reading(annotation: Any) -> tuple[bool, bool]:
    """(many, json) for a field's annotation."""
    members = _members(annotation)
    items = [get_args(m)[0] if get_args(m) else Any for m in members if get_origin(m) in _SEQUENCES]
    many = bool(items)
    return many, any(_is_object(m) for m in (items if many else members))


def _slots(model: type[BaseModel], flatten: Sequence[str]) -> dict[str, Slot]:
    slots: dict[str, Slot] = {}

    def add(keys: Iterable[str], slot: Slot) -> None:
        for key in keys:
            if key in slots:
                raise ValueError(f"{model.__name__}: the query parameter {key!r} is two fields")
            slots[key] = slot

    for name, field in model.model_fields.items():
        if name in flatten:
            nested = field.annotation
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                raise TypeError(f"{model.__name__}.{name} is not a model and cannot be flattened")
            for sub, sub_field in nested.model_fields.items():
                many, as_json = _reading(sub_field.annotation)
                keys = [*spellings(sub)]
                keys += [f"{o}.{inner}" for o in spellings(name) for inner in spellings(sub)]
                add(keys, Slot((name, sub), many, as_json, sub_field))
        else:
            many, as_json = _reading(field.annotation)
            add(spellings(name), Slot((name,), many, as_json, field))
    return slots


def _value(slot: Slot, text: str) -> Any:
    """A parameter's text as the model's input: JSON text parsed for an object-valued field."""
    if not (slot.json and text.lstrip()[:1] in ("{", "[")):
        return text
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    check_json_value(value)
    return value


class QueryForm(Generic[M]):
    """A request model read from the query string; a FastAPI dependency that returns it."""

    def __init__(self, model: type[M], *, flatten: Sequence[str] = ()) -> None:
        self.model = model
        self.slots = _slots(model, flatten)
        self.query_names = frozenset(self.slots)  # every parameter it reads, every spelling

    async def __call__(self, request: Request) -> M:
        return self.read(request.query_params.multi_items())

    def read(self, items: Iterable[tuple[str, str]]) -> M:
        """The model from (name, value) pairs; VALIDATION_ERROR naming the parameter if not."""
        data: dict[str, Any] = {}
        given: dict[tuple[str, ...], str] = {}
        errors: list[dict[str, Any]] = []
        for key, text in items:
            slot = self.slots.get(key)
            if slot is None:
                if key not in RESERVED:
                    errors.append(query_error(key, "extra_forbidden", "unknown query parameter"))
                continue
            first = given.setdefault(slot.path, key)
            if first != key:
                where = ".".join(slot.path)
                message = f"{where} is given twice, as {first!r} and {key!r}: send one of them"
                errors.append(query_error(key, SPELLING_CONFLICT, message))
                continue
            target = data
            for part in slot.path[:-1]:
                target = target.setdefault(part, {})
            leaf = slot.path[-1]
            if leaf in target and not slot.many:
                message = "given more than once; only list parameters repeat"
                errors.append(query_error(key, "value_error", message))
                continue
            try:
                value = _value(slot, text)
            except ValueError as exc:
                errors.append(query_error(key, "value_error", str(exc)))
                continue
            if slot.many:
                target.setdefault(leaf, []).append(value)
            else:
                target[leaf] = value
        if errors:
            raise validation_error(errors)
        try:
            return self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            explained = explain_spellings(exc.errors(), data)
            raise validation_error(
                [{**e, "loc": ("query", *_as_given(tuple(e["loc"]), given))} for e in explained]
            ) from None

    def openapi_parameters(self) -> list[dict[str, Any]]:
        """The parameters for the route's OpenAPI operation, one per field, by its name; the
        schema is the field's own in the model's JSON schema (JSON text: a string)."""
        by_path: dict[tuple[str, ...], list[str]] = {}
        for key, slot in self.slots.items():
            by_path.setdefault(slot.path, []).append(key)
        schemas = _property_schemas(self.model)
        parameters: list[dict[str, Any]] = []
        for path, keys in by_path.items():
            slot = self.slots[keys[0]]
            notes = [slot.field.description or "", "JSON text" if slot.json else ""]
            notes.append("also " + ", ".join(f"`{k}`" for k in keys[1:]) if keys[1:] else "")
            schema = {"type": "string"} if slot.json else schemas.get(path, {"type": "string"})
            parameters.append(
                {
                    "name": keys[0],
                    "in": "query",
                    "required": len(path) == 1 and slot.field.is_required(),
                    "description": "; ".join(n for n in notes if n),
                    "schema": schema,
                }
            )
        return parameters


def _property_schemas(model: type[BaseModel]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Each field's schema in the model's JSON schema (one level of nesting), without null."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    whole = model.model_json_schema()
    defs = whole.get("$defs", {})

    def collect(schema: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for name, prop in schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
            options = [o for o in prop.pop("anyOf", [prop]) if o.get("type") != "null"]
            one = {**prop, **options[0]} if len(options) == 1 else {**prop, "anyOf": options}
            found[(*prefix, name)] = one
            ref = one.get("$ref", "")
            if not prefix and ref.startswith("#/$defs/"):
                collect(defs[ref.removeprefix("#/$defs/")], (name,))

    collect(whole, ())
    return found


def _as_given(loc: tuple[Any, ...], given: dict[tuple[str, ...], str]) -> tuple[Any, ...]:
    """An error's location with the parameter as the client spelled it: (`maxTokens`, ...)."""
    for size in range(len(loc), 0, -1):
        key = given.get(tuple(loc[:size]))
        if key is not None:
            return (key, *loc[size:])
    return loc
