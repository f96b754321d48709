"""`get_weather`: the current weather and a daily forecast from Open-Meteo (no API key needed).

Two HTTP calls with a timeout: the geocoding API turns the place name into coordinates, the
forecast API gives the weather there. The base URLs are settings
(`TOKENRELAY_GEOCODING_BASE_URL`, `TOKENRELAY_WEATHER_BASE_URL`), so a self-hosted Open-Meteo
or a test server can stand in. When the service cannot be reached or answers with an error the
tool fails with a `ToolError` that says so; it never makes up a forecast.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Annotated, Any

import httpx
from pydantic import Field

from tokenrelay.i18n import tr
from tokenrelay.tools.context import ToolContext, ToolError
from tokenrelay.tools.tool import tool

logger = logging.getLogger("tokenrelay.tools")

_COORDS = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)\s*$")

# WMO weather interpretation codes, as documented by Open-Meteo
WMO_CODES: dict[int, str] = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "moderate drizzle",
    55: "dense drizzle",
    56: "light freezing drizzle",
    57: "dense freezing drizzle",
    61: "slight rain",
    63: "moderate rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "heavy freezing rain",
    71: "slight snow",
    73: "moderate snow",
    75: "heavy snow",
    77: "snow grains",
    80: "slight rain showers",
    81: "moderate rain showers",
    82: "violent rain showers",
    85: "slight snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with slight hail",
    99: "thunderstorm with heavy hail",
}


def describe_code(code: Any) -> str:
    if isinstance(code, int | float) and int(code) in WMO_CODES:
        return WMO_CODES[int(code)]
    return "unknown"


def pick_place(results: list[dict[str, Any]], qualifier: str | None) -> dict[str, Any] | None:
    """The geocoding result to use: the first whose country/region matches the qualifier
    ("Paris, France" → France), else the first."""
    if not results:
        return None
    if qualifier:
        q = qualifier.strip().lower()
        for place in results:
            names = (place.get("country"), place.get("country_code"), place.get("admin1"))
            if any(isinstance(n, str) and n.lower() == q for n in names):
                return place
    return results[0]


def summarize_forecast(place: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Open-Meteo's forecast JSON → the tool's result (pure)."""
    current = data.get("current") or {}
    daily = data.get("daily") or {}
    dates = daily.get("time") or []

    def column(name: str) -> list[Any]:
        values = daily.get(name) or []
        return list(values) + [None] * (len(dates) - len(values))

    codes, highs = column("weather_code"), column("temperature_2m_max")
    lows, rain = column("temperature_2m_min"), column("precipitation_probability_max")
    return {
        "location": place.get("name"),
        "country": place.get("country"),
        "latitude": place.get("latitude"),
        "longitude": place.get("longitude"),
        "timezone": data.get("timezone") or place.get("timezone"),
        "current": {
            "time": current.get("time"),
            "temperature_c": current.get("temperature_2m"),
            "humidity_pct": current.get("relative_humidity_2m"),
            "wind_speed_kmh": current.get("wind_speed_10m"),
            "conditions": describe_code(current.get("weather_code")),
        },
        "daily": [
            {
                "date": day,
                "conditions": describe_code(codes[i]),
                "max_c": highs[i],
                "min_c": lows[i],
                "precipitation_probability_pct": rain[i],
            }
            for i, day in enumerate(dates)
        ],
        "source": "open-meteo.com",
    }


async def _get_json(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
    try:
        response = await client.get(url, params=params)
    except httpx.TimeoutException as e:
        logger.warning("weather service %s: no answer in time (TOKENRELAY_WEATHER_TIMEOUT_S)", url)
        raise ToolError(
            tr(
                "the weather service did not answer in time; no forecast is available now"
                " — try again later"
            )
        ) from e
    except httpx.HTTPError as e:
        logger.warning("weather service %s cannot be reached: %r", url, e)
        raise ToolError(
            tr(
                "the weather service cannot be reached ({error}); no forecast is available"
                " — try again later",
                error=type(e).__name__,
            )
        ) from e
    if response.status_code >= 400:
        reason = ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = str(response.json().get("reason", ""))
        raise ToolError(
            tr(
                "the weather service answered HTTP {status}{reason}; no forecast is available",
                status=response.status_code,
                reason=f": {reason}" if reason else "",
            )
        )
    try:
        return response.json()
    except ValueError as e:
        raise ToolError(tr("the weather service sent something that is not JSON")) from e


@tool
async def get_weather(
    location: Annotated[str, Field(min_length=1, max_length=200)],
    ctx: ToolContext,
    days: Annotated[int, Field(ge=1, le=16)] = 3,
) -> dict[str, Any]:
    """Get the current weather and a daily forecast for a place.

    Args:
        location: a city or place name, optionally with its country ("Paris, France"),
            or "latitude,longitude"
        days: how many days of forecast, 1 to 16
    """
    settings = ctx.settings
    timeout = httpx.Timeout(settings.weather_timeout_s)
    async with httpx.AsyncClient(timeout=timeout) as client:
        coords = _COORDS.match(location)
        if coords:
            place: dict[str, Any] | None = {
                "name": location.strip(),
                "latitude": float(coords.group(1)),
                "longitude": float(coords.group(2)),
            }
        else:
            name, _, qualifier = location.partition(",")
            await ctx.progress(tr("Looking up {location}", location=location))
            found = await _get_json(
                client,
                settings.geocoding_base_url.rstrip("/") + "/v1/search",
                {"name": name.strip(), "count": 5, "language": "en", "format": "json"},
            )
            place = pick_place(list(found.get("results") or []), qualifier or None)
        if place is None:
            raise ToolError(
                tr(
                    "no place called {location!r} was found; give a city name, optionally with"
                    " its country",
                    location=location,
                )
            )
        await ctx.progress(tr("Fetching the forecast for {place}", place=place.get("name")))
        data = await _get_json(
            client,
            settings.weather_base_url.rstrip("/") + "/v1/forecast",
            {
                "latitude": place["latitude"],
                "longitude": place["longitude"],
                "current": "temperature_2m,relative_humidity_2m,wind_speed_10m,weather_code",
                "daily": "weather_code,temperature_2m_max,temperature_2m_min,"
                "precipitation_probability_max",
                "timezone": "auto",
                "forecast_days": days,
            },
        )
    return summarize_forecast(place, data)
