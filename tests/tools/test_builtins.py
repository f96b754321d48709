"""The built-in tools, each through the runner (what the agent loop does)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.tools.conftest import FakeOpenMeteo
from tokenrelay.config import Settings
from tokenrelay.providers.base import ToolCall
from tokenrelay.tools import Tool, ToolContext
from tokenrelay.tools.builtin import (
    calculate,
    convert_units,
    current_time,
    get_weather,
    search_documents,
)
from tokenrelay.tools.builtin.calculate import evaluate
from tokenrelay.tools.builtin.clock import describe_time
from tokenrelay.tools.builtin.units import convert, normalize_unit
from tokenrelay.tools.context import ToolError
from tokenrelay.tools.runner import ToolOutcome, run_tool


async def call(
    t: Tool, settings: Settings | None = None, documents: Any = None, **args: Any
) -> tuple[ToolOutcome, list[str]]:
    progress: list[str] = []

    async def on_progress(message: str) -> None:
        progress.append(message)

    ctx = ToolContext(
        settings=settings or Settings(),
        documents=documents,
        call_id="c1",
        tool_name=t.name,
        on_progress=on_progress,
    )
    outcome = await run_tool(t, ToolCall("c1", t.name, args), ctx, timeout_s=10)
    return outcome, progress


# -- weather


def weather_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, weather_base_url=url, geocoding_base_url=url, weather_timeout_s=5
    )


async def test_weather_geocodes_then_forecasts(tmp_path: Path, open_meteo: FakeOpenMeteo) -> None:
    outcome, progress = await call(
        get_weather, weather_settings(tmp_path, open_meteo.url), location="Paris, France", days=3
    )
    assert outcome.ok, outcome.error
    result = outcome.result
    assert result["location"] == "Paris" and result["country"] == "France"
    assert result["current"] == {
        "time": "2030-06-01T12:00",
        "temperature_c": 21.4,
        "humidity_pct": 55,
        "wind_speed_kmh": 11.2,
        "conditions": "partly cloudy",
    }
    assert [d["conditions"] for d in result["daily"]] == ["clear sky", "slight rain", "overcast"]
    assert result["daily"][1] == {
        "date": "2030-06-02",
        "conditions": "slight rain",
        "max_c": 25.0,
        "min_c": 15.0,
        "precipitation_probability_pct": 80,
    }
    assert progress == ["Looking up Paris, France", "Fetching the forecast for Paris"]
    (kind, search), (_, forecast) = open_meteo.requests
    assert kind == "search" and search["name"] == "Paris"
    assert forecast["latitude"] == "48.85341" and forecast["forecast_days"] == "3"
    assert "temperature_2m" in forecast["current"] and "weather_code" in forecast["daily"]


async def test_weather_picks_the_place_in_the_named_country(
    tmp_path: Path, open_meteo: FakeOpenMeteo
) -> None:
    outcome, _ = await call(
        get_weather, weather_settings(tmp_path, open_meteo.url), location="Paris, Texas"
    )
    assert outcome.result["country"] == "United States"


async def test_weather_unknown_place_is_an_error_result(
    tmp_path: Path, open_meteo: FakeOpenMeteo
) -> None:
    outcome, _ = await call(
        get_weather, weather_settings(tmp_path, open_meteo.url), location="Atlantis"
    )
    assert outcome.outcome == "error"
    assert "no place called 'Atlantis'" in (outcome.error or "")


async def test_weather_unreachable_is_an_error_never_a_forecast(
    tmp_path: Path, unreachable_url: str
) -> None:
    outcome, _ = await call(
        get_weather, weather_settings(tmp_path, unreachable_url), location="Paris"
    )
    assert not outcome.ok and outcome.result is None
    assert "cannot be reached" in (outcome.error or "")
    assert "no forecast is available" in (outcome.error or "")


async def test_weather_by_coordinates_skips_geocoding(
    tmp_path: Path, open_meteo: FakeOpenMeteo
) -> None:
    outcome, _ = await call(
        get_weather, weather_settings(tmp_path, open_meteo.url), location="37.57, 126.98", days=1
    )
    assert outcome.ok and len(outcome.result["daily"]) == 1
    assert [kind for kind, _ in open_meteo.requests] == ["forecast"]


# -- units


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (100, "C", "F", 212.0),
        (32, "fahrenheit", "celsius", 0.0),
        (-40, "°C", "°F", -40.0),
        (0, "K", "C", -273.15),
        (1, "mi", "km", 1.609344),
        (12, "inches", "ft", 1.0),
        (1, "kg", "lb", 2.2046226218),
        (100, "km/h", "mph", 62.1371192237),
        (10, "knots", "m/s", 5.1444444444),
    ],
)
async def test_convert_units(value: float, src: str, dst: str, expected: float) -> None:
    outcome, _ = await call(convert_units, value=value, from_unit=src, to_unit=dst)
    assert outcome.ok, outcome.error
    assert outcome.result["result"] == pytest.approx(expected, abs=1e-9)


async def test_convert_units_errors_say_why() -> None:
    mixed, _ = await call(convert_units, value=1, from_unit="km", to_unit="kg")
    assert "km is a length unit and kg a mass unit" in (mixed.error or "")
    unknown, _ = await call(convert_units, value=1, from_unit="parsec", to_unit="m")
    assert "unknown unit 'parsec'" in (unknown.error or "")
    cold, _ = await call(convert_units, value=-500, from_unit="F", to_unit="C")
    assert "absolute zero" in (cold.error or "")
    assert normalize_unit("Degrees Celsius") == "C" and normalize_unit("miles") == "mi"
    assert convert(212, "F", "K") == pytest.approx(373.15)


# -- calculate


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(12.5 * 4) / 3", 50 / 3),
        ("2**10 + sqrt(16)", 1028.0),
        ("-3 ** 2", -9),
        ("7 // 2 + 7 % 2", 4),
        ("max(1, 5, 3) - abs(-2)", 3),
        ("round(pi, 2)", 3.14),
    ],
)
async def test_calculate(expression: str, expected: float) -> None:
    outcome, _ = await call(calculate, expression=expression)
    assert outcome.ok, outcome.error
    assert outcome.result == {"expression": expression, "result": pytest.approx(expected)}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("().__class__", "Attribute is not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "only numbers are allowed"),
        ("[1, 2][0]", "is not allowed"),
        ("[i for i in range(9)]", "is not allowed"),
        ("lambda: 1", "is not allowed"),
        ("1 if 1 else 2", "is not allowed"),
        ("True + 1", "only numbers"),
        ("2 ^ 3", "write 2**3"),
        ("9 ** 9 ** 9", "exponents are limited"),
        ("10 ** 999 * 10 ** 999 * 10 ** 999 * 10 ** 999", "too large"),
        ("1 / 0", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("sqrt(-1)", "sqrt"),
        ("exp(1000)", "exp"),
        ("a = 1", "not an arithmetic expression"),
    ],
)
async def test_calculate_rejects_anything_but_arithmetic(expression: str, message: str) -> None:
    outcome, _ = await call(calculate, expression=expression)
    assert not outcome.ok
    assert message in (outcome.error or ""), outcome.error


def test_evaluate_is_pure_and_bounded() -> None:
    assert evaluate("2 ** 1000") == 2**1000
    with pytest.raises(ToolError):
        evaluate("1" * 501)


# -- clock


async def test_current_time_in_a_zone() -> None:
    outcome, _ = await call(current_time, timezone="Asia/Seoul")
    assert outcome.ok and outcome.result["timezone"] == "Asia/Seoul"
    assert outcome.result["utc_offset"] == "+09:00"
    bad, _ = await call(current_time, timezone="Mars/Olympus")
    assert "IANA name" in (bad.error or "")
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert describe_time(fixed) == {
        "timezone": "America/New_York",
        "iso": "2030-01-01T22:04:05-05:00",
        "date": "2030-01-01",
        "time": "22:04:05",
        "weekday": "Tuesday",
        "utc_offset": "-05:00",
    }


# -- documents


async def test_search_documents_without_a_store_is_an_error() -> None:
    outcome, _ = await call(search_documents, query="refund policy")
    assert "no document store" in (outcome.error or "")


async def test_search_documents_uses_the_real_store(tmp_path: Path) -> None:
    from tokenrelay.retrieval.factory import open_document_store
    from tokenrelay.retrieval.ingest import ingest_text

    settings = Settings(data_dir=tmp_path)
    store = await open_document_store(settings)
    try:
        await ingest_text(store, "Refunds are paid within 14 days of a return.", title="Refunds")
        outcome, progress = await call(
            search_documents, settings, documents=store, query="refund", top_k=3
        )
    finally:
        await store.close()
    assert outcome.ok, outcome.error
    assert outcome.result["count"] == 1
    assert outcome.result["results"][0]["title"] == "Refunds"
    assert progress == ["Searching documents for 'refund'"]


async def test_search_documents_only_sees_the_owners_documents(tmp_path: Path) -> None:
    from tokenrelay.retrieval.factory import open_document_store
    from tokenrelay.retrieval.ingest import ingest_text
    from tokenrelay.retrieval.owned import scoped_store

    settings = Settings(data_dir=tmp_path)
    store = await open_document_store(settings)
    try:
        await ingest_text(scoped_store(store, "alice"), "Alice's refund note.", title="Alice")
        found: dict[str, int] = {}
        for owner in ("alice", "bob"):
            ctx = ToolContext(settings=settings, documents=store, owner=owner, call_id="c1")
            outcome = await run_tool(
                search_documents,
                ToolCall("c1", "search_documents", {"query": "refund"}),
                ctx,
                timeout_s=10,
            )
            found[owner] = outcome.result["count"]
    finally:
        await store.close()
    assert found == {"alice": 1, "bob": 0}
