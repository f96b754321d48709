"""API keys: loading, constant-time checks, and the pure ASGI middleware that enforces them.

With keys configured every request needs one, except the open paths (health, the chat page and
its static files, the API schema, and `/metrics` when `metrics_public`). A key is sent as
`Authorization: Bearer <key>`; browsers' EventSource cannot set headers, so `?token=<key>` is
also accepted, on `GET /api/chat/stream` and `GET /api/streams/{id}` only.

Each key has an owner id, stable and not secret: the name given with it (`name:key`), or
`key-` and 12 hex digits of the key's SHA-256. The middleware puts it in
`scope["state"]["owner"]` (so `request.state.owner`); the stores use it to scope sessions,
streams and documents. Keys are kept only as SHA-256 digests and compared with
`hmac.compare_digest` against every configured key, so timing tells nothing about them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, TokenRelayError
from tokenrelay.i18n import tr
from tokenrelay.server.asgi import (
    MetricsGetter,
    count_rejected,
    header,
    scope_state,
    send_error,
    send_error_body,
)
from tokenrelay.server.openai_format import error_response_of

OWNER_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_KEY_CHARS = 16
_GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/favicon.ico", "/openapi.json", "/docs", "/redoc"}
)
OPEN_PREFIXES = ("/static/", "/docs/")
_TOKEN_QUERY_PATHS = re.compile(r"^/api/(chat/stream|streams/[^/]+)$")


class SecurityConfigError(ValueError):
    """The security settings (keys, origins) cannot be used; the message says the fix."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    owner: str
    digest: bytes  # SHA-256 of the key; the key itself is not kept


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_key_entry(entry: str, *, where: str) -> ApiKey:
    """`name:key` or a bare key (owner `key-<sha256 prefix>`)."""
    name, sep, secret = entry.partition(":")
    if not sep:
        name, secret = "", entry
    name, secret = name.strip(), secret.strip()
    if sep and not OWNER_PATTERN.match(name):
        raise SecurityConfigError(
            f"{where}: key name {name!r} may only hold letters, digits, '.', '_' and '-' "
            "(1 to 64 of them); write entries as name:key"
        )
    if len(secret) < MIN_KEY_CHARS or any(c.isspace() for c in secret):
        label = f"key {name!r}" if name else "a bare key"
        raise SecurityConfigError(
            f"{where}: {label} is too short or has spaces; use at least {MIN_KEY_CHARS} "
            f"characters without spaces, e.g. from: {_GENERATE_HINT}"
        )
    digest = _digest(secret)
    return ApiKey(owner=name or f"key-{digest.hex()[:12]}", digest=digest)


def parse_keys(text: str, *, where: str) -> list[ApiKey]:
    """Entries separated by commas or new lines; blank lines and `#` comments are skipped."""
    keys: list[ApiKey] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keys.extend(parse_key_entry(e, where=where) for e in line.split(",") if e.strip())
    return keys


class ApiKeyring:
    """The configured keys; `owner_for` finds whose a presented key is."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)
        owners = [k.owner for k in self._keys]
        if len(set(owners)) != len(owners):
            dup = sorted({o for o in owners if owners.count(o) > 1})
            raise SecurityConfigError(f"API key names must be unique; repeated: {', '.join(dup)}")
        if len({k.digest for k in self._keys}) != len(self._keys):
            raise SecurityConfigError("the same API key is configured twice; give each its own key")

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def owners(self) -> list[str]:
        return [k.owner for k in self._keys]

    def owner_for(self, presented: str) -> str | None:
        """The owner of `presented`, or None. Compares against every key, whatever matches."""
        digest = _digest(presented)
        found: str | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key.owner
        return found


def load_keyring(settings: Settings) -> ApiKeyring | None:
    """Keys from `api_keys` and `api_keys_file`; None when neither holds any (auth off)."""
    keys: list[ApiKey] = []
    if settings.api_keys is not None:
        keys += parse_keys(settings.api_keys.get_secret_value(), where="TOKENRELAY_API_KEYS")
    if settings.api_keys_file is not None:
        path = Path(settings.api_keys_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SecurityConfigError(
                f"cannot read the API keys file {path}: {exc.strerror or exc}; "
                "fix TOKENRELAY_API_KEYS_FILE or the file's permissions"
            ) from exc
        keys += parse_keys(text, where=str(path))
    if not keys and (settings.api_keys is not None or settings.api_keys_file is not None):
        raise SecurityConfigError(
            "API keys are configured but none was found; add 'name:key' entries, "
            "or unset TOKENRELAY_API_KEYS / TOKENRELAY_API_KEYS_FILE to turn auth off"
        )
    return ApiKeyring(keys) if keys else None


def presented_key(scope: Scope) -> str | None:
    """The key the caller sent: `Authorization: Bearer`, or `?token=` where EventSource needs it."""
    raw = header(scope, b"authorization")
    if raw is not None:
        scheme, _, value = raw.decode("latin-1").strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if scope.get("method") == "GET" and _TOKEN_QUERY_PATHS.match(scope.get("path", "")):
        query: str = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=False):
            if name == "token":
                return value
    return None


def is_open_path(path: str, *, metrics_public: bool) -> bool:
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return True
    return metrics_public and path == "/metrics"


def unauthorized(sent: bool) -> TokenRelayError:
    if sent:
        message = tr("the API key is not valid")
        suggestion = tr("check the key; ask for a new one if it was revoked")
    else:
        message = tr("an API key is required")
        suggestion = tr(
            "send 'Authorization: Bearer <key>' (EventSource: add ?token=<key> to the URL)"
        )
    return TokenRelayError(message, suggestion=suggestion, code=ErrorCode.UNAUTHORIZED)


class AuthMiddleware:
    """Sets `scope["state"]["owner"]` from the API key, or answers 401 UNAUTHORIZED."""

    def __init__(
        self,
        app: ASGIApp,
        keyring: ApiKeyring,
        *,
        metrics_public: bool,
        metrics: MetricsGetter | None = None,
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.metrics_public = metrics_public
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open_path(
            scope.get("path", ""), metrics_public=self.metrics_public
        ):
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope)
        owner = self.keyring.owner_for(presented) if presented else None
        if owner is None:
            count_rejected(self.metrics, "unauthorized")
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_error_for(
                scope, send, unauthorized(presented is not None), {"WWW-Authenticate": "Bearer"}
            )
            return
        scope_state(scope)["owner"] = owner
        await self.app(scope, receive, send)


async def send_error_for(
    scope: Scope, send: Send, exc: TokenRelayError, headers: dict[str, str] | None = None
) -> None:
    """`send_error`, but in OpenAI's envelope and status under `/v1/`, where the OpenAI
    SDKs read the error (an `AuthenticationError` for a 401, a `RateLimitError` for a 429)."""
    if not scope.get("path", "").startswith("/v1/"):
        await send_error(send, exc, headers)
        return
    status, body = error_response_of(exc.to_dict())
    await send_error_body(send, exc, status, body, headers)


def parse_origins(value: str) -> list[str]:
    """`cors_origins`: comma-separated origins such as `https://chat.example.com`."""
    origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise SecurityConfigError(
                f"TOKENRELAY_CORS_ORIGINS: {origin!r} is not an origin; "
                "write scheme://host[:port], e.g. https://chat.example.com"
            )
    return origins
