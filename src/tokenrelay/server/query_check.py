"""Unknown query parameters are errors on every native route, as unknown body fields are.

A route reads the parameters it declares: its own and its dependencies' `Query` parameters,
and the `query_names` of a dependency that reads the query itself (`query_form.QueryForm`).
Anything else is a 422 VALIDATION_ERROR naming it, before the route runs, so a misspelt or
unsupported parameter never passes silently. `RESERVED` are the protocol's own parameters,
which are no field of any request and pass everywhere.

`CheckedRoute` (server/json_checks.py) runs this for the FastAPI routes; `ChatStreamRoute`
(server/chat_stream_route.py) for `POST /api/chat/stream`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant

from tokenrelay.errors import ValidationError
from tokenrelay.server.error_responses import validation_error

# last_event_id: Last-Event-ID on an EventSource's first request (server/limits.py);
# token: the API key where EventSource cannot send a header (server/security.py)
RESERVED = frozenset({"last_event_id", "token"})


def query_error(key: str, kind: str, message: str) -> dict[str, Any]:
    """One error about the query parameter `key`, as pydantic's errors are shaped."""
    return {"loc": ("query", key), "type": kind, "msg": message}


def declared_query_names(dependant: Dependant) -> frozenset[str]:
    """Every query parameter a FastAPI route reads, and `RESERVED`."""
    names = set(RESERVED)
    stack = [dependant]
    while stack:
        found = stack.pop()
        names.update(param.alias for param in found.query_params)
        names.update(getattr(found.call, "query_names", ()))
        stack.extend(found.dependencies)
    return frozenset(names)


def check_query(query_string: bytes, allowed: frozenset[str]) -> None:
    """VALIDATION_ERROR naming every parameter of the query that is not in `allowed`."""
    if not query_string:
        return
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    unknown = dict.fromkeys(name for name, _ in pairs if name not in allowed)
    if unknown:
        raise unknown_parameters(list(unknown))


def unknown_parameters(names: list[str]) -> ValidationError:
    errors = [query_error(name, "extra_forbidden", "unknown query parameter") for name in names]
    return validation_error(errors)
