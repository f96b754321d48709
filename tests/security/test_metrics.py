"""Every metric the operations issue names is observed by a real stream (read over /metrics)."""

from __future__ import annotations

import re

import httpx

from tests.security.conftest import STALL, open_stream


def _value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_stream_metrics_are_observed(live_server) -> None:
    async with (
        live_server(max_open_streams=1, disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await client.post(
            "/api/chat",
            json={"message": "hi", "options": {"scripted": {"tokens": 5, "delay_ms": 5}}},
        )
        await client.post(
            "/api/chat",
            json={"message": "x", "options": {"scripted": {"error_after": 1}}},
        )
        running = await open_stream(client, {"message": "stall", **STALL})
        await client.post("/api/chat/stream", json={"message": "refused"})  # 503: busy
        await client.post(f"/api/streams/{running['stream_id']}/cancel")
        # after the cancel: a reading holds a slot too, and the cap (1) would refuse it first
        await client.get(
            f"/api/streams/{running['stream_id']}", headers={"Last-Event-ID": "x"}
        )  # 422, not a resume
        text = (await client.get("/metrics")).text
    for name in (
        "tokenrelay_time_to_first_token_seconds_count",
        "tokenrelay_inter_token_gap_seconds_count",
        "tokenrelay_provider_first_event_seconds_count",
        "tokenrelay_tokens_per_second_count",
        "tokenrelay_stream_duration_seconds_count",
        "tokenrelay_completion_tokens_total",
    ):
        assert _value(text, name) > 0, name
    assert re.search(r'tokenrelay_streams_total\{code="",outcome="done"\} [1-9]', text)
    assert re.search(r'tokenrelay_streams_total\{code="PROVIDER_ERROR",outcome="error"\}', text)
    assert re.search(r'tokenrelay_streams_total\{code="CANCELLED",outcome="error"\}', text)
    assert re.search(r'tokenrelay_provider_errors_total\{code="PROVIDER_ERROR"', text)
    assert re.search(r'tokenrelay_rejected_requests_total\{reason="busy"\} 1', text)
    assert "tokenrelay_active_streams 0.0" in text
