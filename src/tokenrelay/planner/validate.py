"""Checking a drafted plan, and completing one that never validated. Pure functions.

`check_draft` reads the model's reply (tolerantly, see `repair`), fills in what the request
already fixes (location, dates, currency, the total), validates the plan with pydantic, then
checks what pydantic cannot: one day per date in order, and the total within the budget. The
problems come back as sentences the model can act on in a refine round.

`complete_plan` is the last resort of the finalize step: it keeps every valid part of the best
draft (days, activities, titles) and fills the gaps with plain suggestions, scaling costs into
the budget, so that the plan returned is always valid. Its notes say what was filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pydantic

from tokenrelay.planner.models import (
    Activity,
    DayPlan,
    PlanRequest,
    TravelPlan,
)
from tokenrelay.planner.repair import JsonRepairError, coerce_number, coerce_time, parse_lenient

_ALIASES = {
    "days": ("days", "itinerary", "plan", "daily_plan"),
    "activities": ("activities", "schedule", "items", "events"),
    "name": ("name", "activity", "title"),
    "estimated_cost": ("estimated_cost", "cost", "price", "estimated_cost_usd"),
    "time": ("time", "start_time", "start"),
}


@dataclass(frozen=True)
class Checked:
    plan: TravelPlan | None  # None while there are problems
    problems: list[str]
    data: dict[str, Any] | None = None  # the normalised draft, for `complete_plan`
    fixes: list[str] = field(default_factory=list)


def _pick(data: dict[str, Any], key: str) -> Any:
    for alias in _ALIASES.get(key, (key,)):
        if alias in data:
            return data[alias]
    return None


def _activity(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for key in ("name", "estimated_cost", "time"):
        out[key] = _pick(raw, key)
    cost = coerce_number(out["estimated_cost"])
    if cost is not None:
        out["estimated_cost"] = round(cost, 2)
    clock = coerce_time(out["time"])
    if clock is not None:
        out["time"] = clock
    if out.get("description") is None:
        out["description"] = ""
    return out


def _day(raw: Any, index: int) -> Any:
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    number = coerce_number(raw.get("day"))
    out["day"] = int(number) if number is not None else index + 1
    out["title"] = raw.get("title") or raw.get("theme") or f"Day {index + 1}"
    activities = _pick(raw, "activities")
    out["activities"] = [_activity(a) for a in activities] if isinstance(activities, list) else []
    return out


def normalize(data: dict[str, Any], request: PlanRequest) -> dict[str, Any]:
    """The draft with what the request fixes filled in and values coerced (see module doc)."""
    days_raw = _pick(data, "days")
    days = [_day(d, i) for i, d in enumerate(days_raw)] if isinstance(days_raw, list) else []
    costs = [
        a["estimated_cost"]
        for d in days
        if isinstance(d, dict)
        for a in d["activities"]
        if isinstance(a, dict) and isinstance(a.get("estimated_cost"), int | float)
    ]
    count = len(request.dates)
    title = request.title or data.get("title") or f"{count}-day trip to {request.location}"
    return {
        "title": str(title)[:200],
        "location": request.location,
        "start_date": request.start_date.isoformat(),
        "end_date": request.end_date.isoformat(),
        "days": days,
        "total_estimated_cost": round(sum(costs), 2),
        "currency": request.plan_currency,  # the budget is in it, whatever the model wrote
        "notes": str(data.get("notes") or "")[:4000],
    }


def _where(loc: tuple[Any, ...]) -> str:
    words: list[str] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        if part in ("days", "activities") and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            words.append(f"{'day' if part == 'days' else 'activity'} {loc[i + 1] + 1}")
            i += 2
            continue
        words.append(str(part))
        i += 1
    return ", ".join(words) or "plan"


def _problems(error: pydantic.ValidationError) -> list[str]:
    return [f"{_where(tuple(e['loc']))}: {e['msg']}" for e in error.errors()][:12]


def semantic_problems(plan: TravelPlan, request: PlanRequest) -> list[str]:
    """What pydantic cannot see: one day per date, in order, and the budget."""
    problems: list[str] = []
    dates = request.dates
    if len(plan.days) != len(dates):
        listed = ", ".join(d.isoformat() for d in dates)
        problems.append(
            f"the plan has {len(plan.days)} days but the trip has {len(dates)} ({listed}); "
            "write exactly one day per date"
        )
    for i, (day, expected) in enumerate(zip(plan.days, dates, strict=False)):
        if day.date != expected:
            problems.append(f"day {i + 1} is dated {day.date}; it must be {expected}")
        if day.day != i + 1:
            problems.append(f"day {i + 1} is numbered {day.day}; number the days from 1")
    limit = request.budget_limit
    if limit is not None and plan.total_estimated_cost > limit + 1e-6:
        problems.append(
            f"the activities cost {plan.total_estimated_cost:g} {plan.currency} in total, over "
            f"the {request.budget or 'daily'} budget of {limit:g} {plan.currency} for"
            f" {len(dates)} days; "
            "choose cheaper activities"
        )
    return problems


def check_draft(text: str, request: PlanRequest) -> Checked:
    """Read and validate one drafted plan (see module doc)."""
    try:
        raw = parse_lenient(text)
    except JsonRepairError as e:
        return Checked(None, [f"the reply is not a JSON object: {e}"])
    data = normalize(raw, request)
    try:
        plan = TravelPlan.model_validate(data)
    except pydantic.ValidationError as e:
        return Checked(None, _problems(e), data)
    problems = semantic_problems(plan, request)
    return Checked(None if problems else plan, problems, data)


def _fallback_activities(request: PlanRequest, index: int, rainy: bool) -> list[Activity]:
    daily = request.daily_amount
    place = request.location
    morning = (
        ("Museum or gallery", f"Spend the rainy morning indoors at a museum in {place}.")
        if rainy
        else (f"Walk through {place}", "Explore the old town and its landmarks on foot.")
    )
    plan = [
        ("09:30", *morning, 0.10),
        ("12:30", "Lunch at a local restaurant", "Try a regional dish.", 0.20),
        ("15:00", "Cultural visit", f"Visit a well-reviewed sight in {place}.", 0.15),
        ("19:00", "Dinner", "Dinner close to where you stay.", 0.30),
    ]
    return [
        Activity(time=t, name=n, description=d, estimated_cost=round(daily * share, 2))
        for t, n, d, share in plan
    ]


def _valid_activities(raw_day: Any) -> list[Activity]:
    if not isinstance(raw_day, dict):
        return []
    kept: list[Activity] = []
    for raw in raw_day.get("activities") or []:
        try:
            kept.append(Activity.model_validate(raw))
        except pydantic.ValidationError:
            continue
    return sorted(kept, key=lambda a: a.time)[:12]


def _source_day(days: list[Any], index: int, when: date) -> Any:
    for day in days:
        if isinstance(day, dict) and day.get("date") == when.isoformat():
            return day
    return days[index] if index < len(days) else None


def complete_plan(
    data: dict[str, Any] | None, request: PlanRequest, rainy_dates: set[date] | None = None
) -> tuple[TravelPlan, list[str]]:
    """A valid plan from the valid parts of `data`, and what had to be filled in."""
    data = data or normalize({}, request)
    raw_days = data.get("days") or []
    fixes: list[str] = []
    days: list[DayPlan] = []
    for i, when in enumerate(request.dates):
        source = _source_day(raw_days, i, when)
        activities = _valid_activities(source)
        if not activities:
            activities = _fallback_activities(request, i, when in (rainy_dates or set()))
            fixes.append(f"day {i + 1} ({when}) was filled in with general suggestions")
        title = source.get("title") if isinstance(source, dict) else None
        if not isinstance(title, str) or not title.strip():
            title = f"Day {i + 1} in {request.location}"
        days.append(DayPlan(day=i + 1, date=when, title=title[:200], activities=activities))
    total = round(sum(a.estimated_cost for d in days for a in d.activities), 2)
    limit = request.budget_limit
    if limit is not None and total > limit:
        factor = limit / total
        days = [
            d.model_copy(
                update={
                    "activities": [
                        a.model_copy(update={"estimated_cost": int(a.estimated_cost * factor)})
                        for a in d.activities
                    ]
                }
            )
            for d in days
        ]
        total = round(sum(a.estimated_cost for d in days for a in d.activities), 2)
        fixes.append(f"costs were scaled down to fit the {request.budget or 'daily'} budget")
    notes = str(data.get("notes") or "")
    if fixes:
        notes = (notes + " " if notes else "") + (
            "Completed automatically because the model's plan did not validate: "
            + "; ".join(fixes)
            + "."
        )
    plan = TravelPlan(
        title=str(data.get("title") or f"Trip to {request.location}")[:200],
        location=request.location,
        start_date=request.start_date,
        end_date=request.end_date,
        days=days,
        total_estimated_cost=total,
        currency=request.plan_currency,
        notes=notes[:4000],
    )
    return plan, fixes
