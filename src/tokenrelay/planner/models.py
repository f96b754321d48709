"""The travel plan and the plan request: pydantic models and the pure date/budget rules."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.spelling import REQUEST_SPELLING, RequestModel, ScriptedRequestOptions

MAX_TRIP_DAYS = 14
Budget = Literal["low", "medium", "high"]
# the most a plan may cost per day (all activities, one traveller), per currency; another
# currency needs the request's own `daily_budget`
DAILY_BUDGETS: dict[str, dict[str, float]] = {
    "USD": {"low": 100.0, "medium": 250.0, "high": 600.0},
    "EUR": {"low": 100.0, "medium": 250.0, "high": 600.0},
    "KRW": {"low": 130_000.0, "medium": 330_000.0, "high": 800_000.0},
    "JPY": {"low": 15_000.0, "medium": 37_000.0, "high": 90_000.0},
}
DAILY_BUDGET = DAILY_BUDGETS["USD"]
DEFAULT_CURRENCY = "USD"
# a plan's currency when the request names none: the user's language's
LOCALE_CURRENCY: dict[str, str] = {"en": "USD", "ko": "KRW"}
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class PlanOptions(RequestModel):
    """Model choice for the planner, like a chat request's options."""

    provider: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=64, le=32768)
    scripted: ScriptedRequestOptions | None = None
    locale: str | None = Field(
        default=None, max_length=35, description="language of the messages and the draft"
    )


class PlanRequest(RequestModel):
    """Body of `POST /api/plans/generate[/stream]`; both spellings (tokenrelay/spelling.py)."""

    model_config = ConfigDict(**REQUEST_SPELLING, str_strip_whitespace=True)

    location: str = Field(min_length=1, max_length=200)
    start_date: date
    end_date: date
    budget: Budget | None = None
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the plan's costs (default: the language's, KRW for"
        " Korean, USD otherwise)",
    )
    daily_budget: float | None = Field(
        default=None, gt=0, le=1e9, description="the most per day, in `currency`, over `budget`"
    )
    title: str | None = Field(default=None, max_length=200)
    max_iterations: int = Field(default=2, ge=1, le=5, description="refine rounds at most")
    preferences: str | list[str] | None = None
    options: PlanOptions = Field(default_factory=PlanOptions)
    event_names: bool | None = None

    @field_validator("preferences")
    @classmethod
    def _short_preferences(cls, value: str | list[str] | None) -> str | list[str] | None:
        text = value if isinstance(value, str) else " ".join(value or [])
        if len(text) > 2000:
            raise ValueError("preferences are limited to 2000 characters")
        return value

    @model_validator(mode="after")
    def _known_budget(self) -> PlanRequest:
        unknown = self.currency is not None and self.currency not in DAILY_BUDGETS
        if unknown and self.budget is not None and self.daily_budget is None:
            raise ValueError(f"give daily_budget for a {self.budget} budget in {self.currency}")
        return self

    def for_locale(self, locale: str) -> PlanRequest:
        """The request with its currency decided: its own, else the language's."""
        if self.currency is not None:
            return self
        return self.model_copy(update={"currency": LOCALE_CURRENCY.get(locale, DEFAULT_CURRENCY)})

    @property
    def plan_currency(self) -> str:
        return self.currency or DEFAULT_CURRENCY

    @property
    def daily_amount(self) -> float:
        """The most per day: the request's own, else its budget's (medium without one)."""
        if self.daily_budget is not None:
            return self.daily_budget
        table = DAILY_BUDGETS.get(self.plan_currency, DAILY_BUDGET)
        return table[self.budget or "medium"]

    @property
    def dates(self) -> list[date]:
        return trip_dates(self.start_date, self.end_date)

    @property
    def preference_text(self) -> str:
        if isinstance(self.preferences, list):
            return ", ".join(p for p in self.preferences if p.strip())
        return self.preferences or ""

    @property
    def budget_limit(self) -> float | None:
        """The most the whole plan may cost, or None without a budget."""
        if self.budget is None and self.daily_budget is None:
            return None
        return self.daily_amount * len(self.dates)


def trip_dates(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def check_dates(start: date, end: date) -> None:
    """Raise VALIDATION_ERROR (422) when the dates cannot make a plan."""
    if end < start:
        raise ValidationError(
            tr(
                "end_date {end} is before start_date {start}",
                end=end.isoformat(),
                start=start.isoformat(),
            ),
            suggestion=tr("give an end_date on or after the start_date"),
        )
    days = (end - start).days + 1
    if days > MAX_TRIP_DAYS:
        raise ValidationError(
            tr(
                "the trip is {days} days long; a plan covers at most {limit} days",
                days=days,
                limit=MAX_TRIP_DAYS,
            ),
            suggestion=tr(
                "shorten the trip, or plan it in parts of up to {limit} days", limit=MAX_TRIP_DAYS
            ),
        )


class Activity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    time: str = Field(pattern=TIME_PATTERN, description="24-hour HH:MM")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    estimated_cost: float = Field(ge=0, le=1_000_000)


class DayPlan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    day: int = Field(ge=1, le=MAX_TRIP_DAYS)
    date: date
    title: str = Field(min_length=1, max_length=200)
    activities: list[Activity] = Field(min_length=1, max_length=12)


class TravelPlan(BaseModel):
    """The plan in the `complete` event and the JSON endpoint's `plan`."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=1, max_length=200)
    location: str = Field(min_length=1, max_length=200)
    start_date: date
    end_date: date
    days: list[DayPlan] = Field(min_length=1, max_length=MAX_TRIP_DAYS)
    total_estimated_cost: float = Field(ge=0)
    currency: str = Field(default=DEFAULT_CURRENCY, min_length=3, max_length=3)
    notes: str = Field(default="", max_length=4000)


class DraftActivity(BaseModel):
    time: str = Field(description="24-hour HH:MM")
    name: str
    description: str
    estimated_cost: float = Field(description="in the plan's currency, per person")


class DraftDay(BaseModel):
    day: int
    date: str = Field(description="YYYY-MM-DD")
    title: str
    activities: list[DraftActivity]


class DraftPlan(BaseModel):
    """What the model is asked to write (location and dates are filled in by us)."""

    title: str
    days: list[DraftDay]
    total_estimated_cost: float
    currency: str = Field(description="ISO 4217 code, e.g. USD")
    notes: str
