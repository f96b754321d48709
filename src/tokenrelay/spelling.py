"""The spelling rule of native request fields: `snake_case` or `camelCase`, never both.

Every field of a native request model (`RequestModel`) is read by its name (`session_id`) or
by its camelCase spelling (`sessionId`), as JavaScript clients write it, in JSON bodies and
in query strings alike. Responses use one spelling, the names (`snake_case`).

The camelCase spelling is a validation alias only (`AliasChoices(name, camel)`): the model's
JSON schema, its dumps and the OpenAPI document keep the names. Both spellings of one field in
one object are a 422: pydantic reads one and finds the other extra (`extra="forbid"`), and
`explain_spellings` rewrites that error to say what happened.

The OpenAI-compatible models (`server/openai_format.py`) are not request models of this kind:
OpenAI's own spelling applies there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel, to_snake

from tokenrelay.providers.options import ScriptedOptions

SPELLING_CONFLICT = "spelling_conflict"
_ROOTS = ("body", "query", "path")  # where FastAPI's error locations start


def both_spellings(name: str) -> AliasChoices:
    """The keys a field is read from: its name first, then its camelCase spelling."""
    return AliasChoices(name, to_camel(name))


def spellings(name: str) -> tuple[str, ...]:
    """A field name's spellings, the name first: ("session_id", "sessionId"), or ("q",)."""
    camel = to_camel(name)
    return (name,) if camel == name else (name, camel)


def other_spelling(key: str) -> str:
    """The other spelling of a key (`sessionId` ↔ `session_id`); the key itself if it has none."""
    camel = to_camel(key)
    return camel if camel != key else to_snake(key)


REQUEST_SPELLING = ConfigDict(
    extra="forbid", alias_generator=AliasGenerator(validation_alias=both_spellings)
)


class RequestModel(BaseModel):
    """A native request model: unknown fields are errors; every field in both spellings."""

    model_config = REQUEST_SPELLING


class ScriptedRequestOptions(ScriptedOptions):
    """`options.scripted` as a native request reads it: the scripted provider's own schema
    (providers/options.py), in both spellings."""

    model_config = REQUEST_SPELLING


def _container(value: Any, path: Sequence[Any]) -> tuple[Any, list[str]]:
    """What `path` (an error's location) points at in `value`, or None; and the keys on the
    way. A part that is not in the value is a union's tag (`RagOptions`), and is passed over."""
    keys: list[str] = []
    for part in path:
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_list or (isinstance(value, Mapping) and part in value):
            value = value[part]
            keys.append(str(part))
        elif not isinstance(part, str):
            return None, keys
    return value, keys


def explain_spellings(errors: Sequence[Any], value: Any) -> list[Any]:
    """pydantic's errors for the input `value`, each "extra field" that is in fact the second
    spelling of a field said as such. Locations are read in `value`: pass `{"body": body}`
    for FastAPI's ("body", ...) locations. Pure; for the error path only."""
    extra = {tuple(e.get("loc", ())) for e in errors if e.get("type") == "extra_forbidden"}
    explained: list[Any] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        key = loc[-1] if loc else None
        if error.get("type") == "extra_forbidden" and isinstance(key, str):
            other = other_spelling(key)
            parent, keys = _container(value, loc[:-1])
            known = (*loc[:-1], other) not in extra  # the other spelling was read: a field
            if other != key and known and isinstance(parent, Mapping) and other in parent:
                name = to_snake(key)
                where = ".".join([*(k for k in keys if k not in _ROOTS), name])
                error = {
                    "loc": loc,
                    "type": SPELLING_CONFLICT,
                    "msg": f"{where} is given twice, as {name!r} and {to_camel(name)!r}: "
                    "send one of the two spellings",
                    "input": error.get("input"),
                }
        explained.append(error)
    return explained
