"""A fake Open-Meteo (geocoding + forecast) on 127.0.0.1, speaking the real API's JSON."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import free_port

PLACES: dict[str, list[dict[str, Any]]] = {
    "paris": [
        {
            "id": 2988507,
            "name": "Paris",
            "latitude": 48.85341,
            "longitude": 2.3488,
            "elevation": 42.0,
            "feature_code": "PPLC",
            "country_code": "FR",
            "timezone": "Europe/Paris",
            "population": 2138551,
            "country": "France",
            "admin1": "Île-de-France",
        },
        {
            "id": 4717560,
            "name": "Paris",
            "latitude": 33.66094,
            "longitude": -95.55551,
            "country_code": "US",
            "timezone": "America/Chicago",
            "country": "United States",
            "admin1": "Texas",
        },
    ],
    "seoul": [
        {
            "id": 1835848,
            "name": "Seoul",
            "latitude": 37.566,
            "longitude": 126.9784,
            "country_code": "KR",
            "timezone": "Asia/Seoul",
            "country": "South Korea",
            "admin1": "Seoul",
        }
    ],
}


def forecast_body(latitude: float, longitude: float, days: int) -> dict[str, Any]:
    dates = [f"2030-06-{d:02d}" for d in range(1, days + 1)]
    return {
        "latitude": latitude,
        "longitude": longitude,
        "generationtime_ms": 0.1,
        "utc_offset_seconds": 7200,
        "timezone": "Europe/Paris",
        "timezone_abbreviation": "CEST",
        "elevation": 43.0,
        "current_units": {"time": "iso8601", "temperature_2m": "°C"},
        "current": {
            "time": "2030-06-01T12:00",
            "interval": 900,
            "temperature_2m": 21.4,
            "relative_humidity_2m": 55,
            "wind_speed_10m": 11.2,
            "weather_code": 2,
        },
        "daily_units": {"time": "iso8601", "temperature_2m_max": "°C"},
        "daily": {
            "time": dates,
            "weather_code": [0, 61, 3][:days] + [1] * max(0, days - 3),
            "temperature_2m_max": [24.0 + i for i in range(days)],
            "temperature_2m_min": [14.0 + i for i in range(days)],
            "precipitation_probability_max": [5, 80, 20][:days] + [10] * max(0, days - 3),
        },
    }


@dataclass
class FakeOpenMeteo:
    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve_open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo(url="")

    async def search(request: Request) -> JSONResponse:
        params = dict(request.query_params)
        fake.requests.append(("search", params))
        results = PLACES.get(params.get("name", "").lower())
        body: dict[str, Any] = {"generationtime_ms": 0.2}
        if results:
            body["results"] = results
        return JSONResponse(body)

    async def forecast(request: Request) -> JSONResponse:
        params = dict(request.query_params)
        fake.requests.append(("forecast", params))
        if "latitude" not in params:
            return JSONResponse({"error": True, "reason": "Parameter 'latitude' missing"}, 400)
        days = int(params.get("forecast_days", "7"))
        return JSONResponse(
            forecast_body(float(params["latitude"]), float(params["longitude"]), days)
        )

    app = Starlette(routes=[Route("/v1/search", search), Route("/v1/forecast", forecast)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with serve_open_meteo() as fake:
        yield fake


@pytest.fixture
def unreachable_url() -> str:
    """A loopback port nobody listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"
