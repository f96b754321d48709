"""CORS: only the configured origins, preflight for the POST stream, our headers allowed."""

from __future__ import annotations

import httpx

from tests.security.conftest import ALICE, KEYS

ORIGIN = "https://chat.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, last-event-id, x-trace-id",
}


async def test_preflight_of_the_post_stream(live_server) -> None:
    async with (
        live_server(cors_origins=f"{ORIGIN}, http://localhost:5173", api_keys=KEYS) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        ok = await client.options("/api/chat/stream", headers=PREFLIGHT)
        evil = await client.options(
            "/api/chat/stream", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        stream = await client.post(
            "/api/chat/stream", json={"message": "hi"}, headers={**ALICE, "Origin": ORIGIN}
        )
        denied = await client.post(
            "/api/chat/stream", json={"message": "hi"}, headers={"Origin": ORIGIN}
        )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    allowed = ok.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "last-event-id", "x-trace-id"):
        assert name in allowed
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    assert stream.status_code == 200
    assert stream.headers["access-control-allow-origin"] == ORIGIN
    assert "x-trace-id" in stream.headers["access-control-expose-headers"].lower()
    # errors from the auth layer reach the browser too
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN


async def test_no_cross_origin_access_by_default(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        preflight = await client.options("/api/chat/stream", headers=PREFLIGHT)
        simple = await client.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code in (404, 405)
    assert "access-control-allow-origin" not in simple.headers
