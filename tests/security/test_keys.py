"""API key parsing and checking (pure parts of server/security.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenrelay.config import Settings
from tokenrelay.server.security import (
    ApiKeyring,
    SecurityConfigError,
    is_open_path,
    load_keyring,
    parse_keys,
    parse_origins,
    presented_key,
)

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"


def test_named_and_bare_keys() -> None:
    keys = parse_keys(f"alice:{ALICE}, {BOB}\n# a comment\n\n", where="test")
    ring = ApiKeyring(keys)
    assert ring.owner_for(ALICE) == "alice"
    bare_owner = ring.owner_for(BOB)
    assert bare_owner is not None and bare_owner.startswith("key-") and BOB not in bare_owner
    assert ring.owner_for(BOB + "x") is None
    assert ring.owner_for("") is None
    assert ring.owner_for(ALICE[:-1]) is None


def test_owner_ids_are_stable_for_bare_keys() -> None:
    first = ApiKeyring(parse_keys(BOB, where="t")).owners
    assert first == ApiKeyring(parse_keys(BOB, where="t")).owners


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("alice:short", "at least 16"),
        ("al ice:" + ALICE, "letters, digits"),
        ("alice:" + ALICE + ",alice:" + BOB, "unique"),
        ("a:" + ALICE + ",b:" + ALICE, "twice"),
    ],
)
def test_bad_key_configs_say_the_fix(text: str, fix: str) -> None:
    with pytest.raises(SecurityConfigError, match=fix):
        ApiKeyring(parse_keys(text, where="TOKENRELAY_API_KEYS"))


def test_errors_never_echo_the_key() -> None:
    secret = "alice:tooshort"
    with pytest.raises(SecurityConfigError) as info:
        parse_keys(secret, where="x")
    assert "tooshort" not in str(info.value)


def test_keys_file_and_env_together(tmp_path: Path) -> None:
    file = tmp_path / "keys.txt"
    file.write_text(f"# team keys\nbob:{BOB}\n")
    ring = load_keyring(
        Settings(api_keys=f"alice:{ALICE}", api_keys_file=file, data_dir=tmp_path)  # type: ignore[arg-type]
    )
    assert ring is not None and sorted(ring.owners) == ["alice", "bob"]


def test_no_keys_means_auth_off_and_empty_config_is_an_error(tmp_path: Path) -> None:
    assert load_keyring(Settings(data_dir=tmp_path)) is None
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    with pytest.raises(SecurityConfigError, match="none was found"):
        load_keyring(Settings(api_keys_file=empty, data_dir=tmp_path))
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_keyring(Settings(api_keys_file=tmp_path / "missing", data_dir=tmp_path))


def _scope(method: str, path: str, query: bytes = b"", auth: bytes | None = None) -> dict:  # type: ignore[type-arg]
    headers = [(b"authorization", auth)] if auth is not None else []
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
    }


def test_where_a_key_may_be_sent() -> None:
    assert presented_key(_scope("POST", "/api/chat", auth=b"Bearer abc")) == "abc"
    assert presented_key(_scope("POST", "/api/chat", auth=b"bearer  abc ")) == "abc"
    assert presented_key(_scope("POST", "/api/chat", auth=b"Basic abc")) is None
    # ?token= only for EventSource GETs
    assert presented_key(_scope("GET", "/api/chat/stream", b"message=hi&token=abc")) == "abc"
    assert presented_key(_scope("GET", "/api/streams/s1", b"token=abc")) == "abc"
    assert presented_key(_scope("POST", "/api/chat/stream", b"token=abc")) is None
    assert presented_key(_scope("GET", "/api/sessions", b"token=abc")) is None
    assert presented_key(_scope("POST", "/api/streams/s1/cancel", b"token=abc")) is None


def test_open_paths() -> None:
    for path in ("/", "/healthz", "/readyz", "/static/app.js", "/openapi.json", "/docs"):
        assert is_open_path(path, metrics_public=False)
    for path in ("/api/sessions", "/v1/models", "/metrics", "/api/documents", "/healthz/x"):
        assert not is_open_path(path, metrics_public=False)
    assert is_open_path("/metrics", metrics_public=True)


def test_origins() -> None:
    assert parse_origins("") == []
    assert parse_origins("https://a.example, http://localhost:5173/") == [
        "https://a.example",
        "http://localhost:5173",
    ]
    with pytest.raises(SecurityConfigError, match="scheme://host"):
        parse_origins("a.example")
