"""Small helpers for our pure ASGI middleware: headers, the caller's identity, JSON errors.

Pure ASGI (no BaseHTTPMiddleware): a middleware costs one call per request and nothing per
streamed chunk unless it must look at the response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Scope, Send

from tokenrelay.errors import TokenRelayError

if TYPE_CHECKING:
    from tokenrelay.delivery.reader import Reader
    from tokenrelay.metrics import Metrics


MetricsGetter = Callable[[], "Metrics | None"]

HANDOFF = "tokenrelay.handoff"  # the scope key of a request's `Handoff`


class Handoff:
    """What the outer layer (server/front.py) and an SSE response share about one request,
    in the scope under `HANDOFF`, present only when every layer between them is ours.

    - `send` is the server's own `send`: the response start goes through the middleware
      chain (each layer sees the status and headers), the body chunks through this, past
      the chain. Each middleware wraps `send` in a coroutine of its own, a cost paid per
      token that the relay benchmark showed (docs/benchmarks.md).
    - `reader`: an SSE response leaves its `Reader` here and returns; the outer layer follows
      it once every layer of the chain has returned, so that an open stream keeps none of
      their frames (docs/benchmarks.md).
    - `after_body`: what a layer does when the response has really ended (the access log's
      line), run once by the outer layer, however the response ends.
    """

    __slots__ = ("after_body", "reader", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.reader: Reader | None = None
        self.after_body: list[Callable[[], object]] = []


def handoff_of(scope: Scope) -> Handoff | None:
    handoff: Handoff | None = scope.get(HANDOFF)
    return handoff


def count_rejected(metrics: MetricsGetter | None, reason: str) -> None:
    """Count a request refused at the door, once the app's metrics exist."""
    found = metrics() if metrics is not None else None
    if found is not None:
        found.count_rejected(reason)


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def scope_state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict that `request.state` reads (created when missing)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def client_ip(scope: Scope) -> str:
    """The peer address as the server saw it. Behind a proxy, list the proxy's address in
    `forwarded_allow_ips` (`tokenrelay serve` then has uvicorn take the client from
    X-Forwarded-For, from that proxy only); the header itself is never read here."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def subject_of(scope: Scope) -> str:
    """Whom limits count against: the API key's owner, or the IP when keys are off."""
    owner = scope_state(scope).get("owner")
    return f"key:{owner}" if owner else f"ip:{client_ip(scope)}"


def retry_after_value(seconds: float) -> str:
    """Retry-After in whole seconds, never 0 (clients would retry at once)."""
    return str(max(1, int(seconds + 0.999)))


async def send_error(
    send: Send, exc: TokenRelayError, headers: dict[str, str] | None = None
) -> None:
    """Answer with our JSON error shape and the code's HTTP status."""
    await send_error_body(send, exc, exc.http_status, orjson.dumps(exc.to_dict()), headers)


async def send_error_body(
    send: Send,
    exc: TokenRelayError,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer `exc` as the JSON `body` with `status`: its Retry-After, then `headers`."""
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if exc.retry_after_s is not None:
        raw_headers.append((b"retry-after", retry_after_value(exc.retry_after_s).encode()))
    for key, value in (headers or {}).items():
        raw_headers.append((key.lower().encode(), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
