"""The planner's messages and output schemas. Pure functions.

Two schemas: `draft_schema()` (the `DraftPlan` model) for providers with JSON-schema output, and
`grammar_schema(request)` for the local model's grammar, which fixes what a small model gets
wrong: exactly one day per date (`prefixItems` with constant day numbers and dates), clock
times by pattern, short strings, and per-activity costs from a list that keeps any day within
the budget.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tokenrelay.planner.models import TIME_PATTERN, DraftPlan, PlanRequest
from tokenrelay.providers.base import ChatMessage
from tokenrelay.tools.tool import clean_schema

MAX_GRAMMAR_ACTIVITIES = 3

SYSTEM = (
    "You are a travel planner. Reply with one JSON object only, no other text. "
    'Shape: {"title": str, "days": [{"day": 1, "date": "YYYY-MM-DD", "title": str, '
    '"activities": [{"time": "HH:MM", "name": str, "description": str, '
    '"estimated_cost": number}]}], "total_estimated_cost": number, "currency": "USD", '
    '"notes": str}. One day per date of the trip, in order, each with 2 to 4 activities.'
)
# the language the plan's words are written in (titles, names, descriptions, notes)
LANGUAGES = {"ko": "Korean", "en": "English"}


def system_prompt(request: PlanRequest, locale: str = "en") -> str:
    text = SYSTEM.replace('"currency": "USD"', f'"currency": "{request.plan_currency}"')
    language = LANGUAGES.get(locale)
    if language is not None and locale != "en":
        text += f" Write every title, name, description and the notes in {language}."
    return text


def draft_schema() -> dict[str, Any]:
    schema: dict[str, Any] = clean_schema(DraftPlan.model_json_schema())
    return schema


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "travel_plan", "schema": schema}}


def cost_choices(request: PlanRequest) -> list[int]:
    """Per-activity costs the grammar allows: at most a third of the daily budget each."""
    cap = request.daily_amount / MAX_GRAMMAR_ACTIVITIES
    if cap <= 1000:  # dollars, euros: the steps a person would write
        step = 5 if cap <= 50 else 10 if cap <= 100 else 25
    else:  # won, yen: about ten round steps (1, 2 or 5 times a power of ten)
        power = 10 ** math.floor(math.log10(cap / 10))
        step = next(power * m for m in (1, 2, 5, 10) if power * m >= cap / 10)
    return list(range(0, int(cap) + 1, int(step)))


def grammar_schema(request: PlanRequest) -> dict[str, Any]:
    """The tight schema for grammar-constrained output (see module doc)."""
    activity = {
        "type": "object",
        "properties": {
            "time": {"type": "string", "pattern": TIME_PATTERN},
            "name": {"type": "string", "minLength": 3, "maxLength": 48},
            "description": {"type": "string", "minLength": 3, "maxLength": 90},
            "estimated_cost": {"enum": cost_choices(request)},
        },
        "required": ["time", "name", "description", "estimated_cost"],
        "additionalProperties": False,
    }
    days = [
        {
            "type": "object",
            "properties": {
                "day": {"const": i + 1},
                "date": {"const": when.isoformat()},
                "title": {"type": "string", "minLength": 3, "maxLength": 48},
                "activities": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/activity"},
                    "minItems": 2,
                    "maxItems": MAX_GRAMMAR_ACTIVITIES,
                },
            },
            "required": ["day", "date", "title", "activities"],
            "additionalProperties": False,
        }
        for i, when in enumerate(request.dates)
    ]
    return {
        "$defs": {"activity": activity},
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 60},
            "days": {"type": "array", "prefixItems": days},
            "notes": {"type": "string", "maxLength": 160},
        },
        "required": ["title", "days", "notes"],
        "additionalProperties": False,
    }


def weather_lines(weather: dict[str, Any] | None, request: PlanRequest) -> list[str]:
    """One line per trip date the forecast covers (and the current weather)."""
    if not weather:
        return []
    trip = {d.isoformat() for d in request.dates}
    lines = []
    for day in weather.get("daily") or []:
        if day.get("date") in trip:
            lines.append(
                f"{day['date']}: {day.get('conditions')}, {day.get('min_c')}–{day.get('max_c')} °C,"
                f" rain chance {day.get('precipitation_probability_pct')}%"
            )
    current = weather.get("current") or {}
    if not lines and current:
        lines.append(
            f"now: {current.get('conditions')}, {current.get('temperature_c')} °C "
            "(no forecast for the trip dates yet)"
        )
    return lines


def user_prompt(request: PlanRequest, weather: dict[str, Any] | None) -> str:
    dates = request.dates
    parts = [
        f"Plan a {len(dates)}-day trip to {request.location} from "
        f"{request.start_date.isoformat()} to {request.end_date.isoformat()}.",
        "Dates: " + ", ".join(d.isoformat() for d in dates) + ".",
    ]
    limit = request.budget_limit
    if limit is not None:
        parts.append(
            f"Budget: {request.budget or 'daily'}, at most {limit:g} {request.plan_currency}"
            " in total for all activities."
        )
    if request.preference_text:
        parts.append(f"Preferences: {request.preference_text}.")
    lines = weather_lines(weather, request)
    if lines:
        parts.append("Weather: " + "; ".join(lines) + ". Plan indoor activities on rainy days.")
    if request.title:
        parts.append(f"Title: {request.title}.")
    return "\n".join(parts)


def draft_messages(
    request: PlanRequest, weather: dict[str, Any] | None, locale: str = "en"
) -> list[ChatMessage]:
    return [
        ChatMessage("system", system_prompt(request, locale)),
        ChatMessage("user", user_prompt(request, weather)),
    ]


def refine_messages(
    base: list[ChatMessage], draft: str, problems: list[str], *, keep_draft: bool = True
) -> list[ChatMessage]:
    """The conversation for a refine round: the last draft and what failed validation.

    Without `keep_draft` (small context windows) the draft is summarised, not repeated.
    """
    feedback = (
        "Your plan did not pass validation:\n"
        + "\n".join(f"- {p}" for p in problems[:10])
        + "\nReply with the whole corrected plan as one JSON object only."
    )
    shown = draft if keep_draft else json.dumps({"draft": "(omitted)"})
    return [*base, ChatMessage("assistant", shown), ChatMessage("user", feedback)]
