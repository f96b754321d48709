"""Schemathesis against our OpenAPI schema: generated requests to the native endpoints never get
a 5xx. The app runs under uvicorn in a thread (schemathesis calls are synchronous), with the
scripted provider, short stream limits and tool back ends pointed at a closed local port."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (dev extra)")

from tests.conftest import free_port  # noqa: E402
from tokenrelay.config import Settings  # noqa: E402
from tokenrelay.server.app import create_app  # noqa: E402

# 5xx found by this test and reported: each shows as a warning until fixed (then remove it)
KNOWN_5XX = {
    ("GET", "/api/sessions"): "lead: offset has no upper bound; a huge one overflows SQLite "
    "INTEGER (routes/sessions.py: Query(ge=0, le=...))",
    ("GET", "/api/documents"): "documents owner: offset has no upper bound; a huge one "
    "overflows SQLite INTEGER (routes/documents.py: Query(ge=0, le=...))",
}

NATIVE = r"^/(api/(chat|streams|sessions|documents)|healthz|readyz)"


def _app_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        provider="scripted",
        stream_deadline_s=2,
        idle_timeout_s=1,
        heartbeat_s=5,
        weather_base_url="http://127.0.0.1:9",
        geocoding_base_url="http://127.0.0.1:9",
        tool_timeout_s=1,
    )


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(_app_settings(tmp_path_factory.mktemp("schemathesis")))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread died at start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


schema = schemathesis.openapi.from_dict(create_app(Settings(provider="scripted")).openapi())
schema = schema.include(path_regex=NATIVE)


def _asks_for_a_failure(case: schemathesis.Case) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    options = body.get("options")
    scripted = options.get("scripted") if isinstance(options, dict) else None
    return isinstance(scripted, dict) and scripted.get("error_after") is not None


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case, server_url: str) -> None:
    response = case.call(base_url=server_url, timeout=10)
    if _asks_for_a_failure(case) and response.status_code in (502, 503, 504, 429):
        return  # options.scripted.error_after=0: the provider's failure, as asked, before the
        # first token, is the response's status (stream_start_wait_s)
    known = KNOWN_5XX.get((case.method, case.path))
    if known and response.status_code >= 500:
        warnings.warn(f"known 5xx on {case.method} {case.path}: {known}", stacklevel=1)
        return
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        assert "code" in response.json(), response.text[:300]
