"""The travel planner: each step's events over real HTTP, refine, weather failure, 422s, the
JSON endpoint, the pure parts (repair, validation, completion) and the real local model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest

from tests.helpers import StreamResult, stream
from tests.tools.conftest import FakeOpenMeteo, serve_open_meteo
from tokenrelay.planner.models import PlanRequest, TravelPlan
from tokenrelay.planner.prompts import cost_choices, grammar_schema, weather_lines
from tokenrelay.planner.repair import coerce_number, coerce_time, parse_lenient
from tokenrelay.planner.validate import check_draft, complete_plan
from tokenrelay.providers.scripted import ScriptedProvider

TRIP = {"location": "Paris", "start_date": "2030-06-01", "end_date": "2030-06-02"}


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with serve_open_meteo() as fake:
        yield fake


def plan_json(days: int = 2, cost: float = 20, **extra: Any) -> str:
    plan = {
        "title": "Paris in two days",
        "days": [
            {
                "day": i + 1,
                "date": f"2030-06-0{i + 1}",
                "title": f"Day {i + 1}",
                "activities": [
                    {
                        "time": "09:00",
                        "name": "Louvre",
                        "description": "Museum",
                        "estimated_cost": cost,
                    },
                    {
                        "time": "13:00",
                        "name": "Lunch",
                        "description": "Bistro",
                        "estimated_cost": cost,
                    },
                ],
            }
            for i in range(days)
        ],
        "total_estimated_cost": 4 * cost,
        "currency": "EUR",
        "notes": "Bring an umbrella.",
        **extra,
    }
    return json.dumps(plan, ensure_ascii=False)


def body(replies: list[str], **fields: Any) -> dict[str, Any]:
    return {**TRIP, **fields, "options": {"scripted": {"replies": replies, "tokens": 6}}}


async def plan_stream(url: str, payload: dict[str, Any]) -> StreamResult:
    return await stream(url, "POST", "/api/plans/generate/stream", json=payload)


def steps(result: StreamResult) -> list[str]:
    return [f.json["step"] for f in result.events if f.type == "progress"]


def statuses(result: StreamResult) -> list[str]:
    return [f.json["message"] for f in result.events if f.type == "status"]


def weather_server(open_meteo: FakeOpenMeteo) -> dict[str, str]:
    return {"weather_base_url": open_meteo.url, "geocoding_base_url": open_meteo.url}


async def test_each_step_announces_itself_and_the_plan_completes(
    live_server: Any, open_meteo: FakeOpenMeteo
) -> None:
    async with live_server(**weather_server(open_meteo)) as srv:
        result = await plan_stream(srv.url, body([plan_json()], budget="medium"))
        sent = srv.app.state.services.providers.get("scripted").last_request
    types = result.types
    assert types[0] == "metadata" and types[-2:] == ["complete", "done"]
    assert steps(result) == [
        "gather_context",
        "gather_context",
        "generate_draft",
        "validate",
        "finalize",
    ]
    progress = [f.json["progress"] for f in result.events if f.type == "progress"]
    assert progress == sorted(progress) and progress[0] >= 0 and progress[-1] <= 100
    # gather_context ran the weather tool, with its events
    tool_types = [t for t in types if t.startswith("tool_")]
    assert tool_types == ["tool_call", "tool_progress", "tool_progress", "tool_result"]
    weather = next(f.json for f in result.events if f.type == "tool_result")
    assert weather["tool"] == "get_weather" and weather["error"] is None
    # the draft streamed as readable text (not the model's JSON) between generate_draft and
    # validate, its costs in the plan's currency (English: USD)
    first_token = types.index("token")
    assert types.index("progress", types.index("tool_result")) < first_token
    assert result.text.startswith("Paris in two days\n\nDay 1 · 2030-06-01: Day 1\n")
    assert "- 09:00 Louvre: Museum ($20)\n" in result.text
    assert result.text.endswith("Estimated total: $80\nNotes: Bring an umbrella.\n")
    assert "{" not in result.text
    assert "The plan is valid" in statuses(result)
    plan = TravelPlan.model_validate(result.events[-2].json["result"])
    assert plan.location == "Paris" and plan.currency == "USD"
    assert [d.date for d in plan.days] == [date(2030, 6, 1), date(2030, 6, 2)]
    assert plan.total_estimated_cost == 80
    assert result.last()["finish_reason"] == "stop"
    # the model was asked for JSON by schema, told the dates, budget and weather
    assert sent is not None and sent.response_format is not None
    assert sent.response_format["type"] == "json_schema"
    prompt = sent.messages[-1].content
    assert "2030-06-01, 2030-06-02" in prompt and "at most 500 USD" in prompt
    assert "2030-06-02: slight rain" in prompt


async def test_an_invalid_draft_triggers_a_refine_round(
    live_server: Any, open_meteo: FakeOpenMeteo
) -> None:
    bad = "Here you go:\n```json\n" + plan_json(days=1, cost=400)[:-1] + ",}\n```"
    async with live_server(**weather_server(open_meteo)) as srv:
        result = await plan_stream(srv.url, body([bad, plan_json()], budget="low"))
        provider: ScriptedProvider = srv.app.state.services.providers.get("scripted")
        refine_request = provider.last_request
    assert steps(result) == [
        "gather_context",
        "gather_context",
        "generate_draft",
        "validate",
        "refine",
        "validate",
        "finalize",
    ]
    said = statuses(result)
    problems = next(s for s in said if s.startswith("The plan has"))
    assert "the plan has 1 days but the trip has 2" in problems
    assert "over the low budget of 200 USD" in problems
    assert any(s.startswith("Refining: ") for s in said)
    refine = next(
        f.json for f in result.events if f.type == "progress" and f.json["step"] == "refine"
    )
    assert refine["message"] == "Refining the plan (round 1 of up to 2)"
    assert said[-1] == "The plan is ready"
    # the refine round streamed again, and the model saw its draft and what failed
    assert "Day 1 · 2030-06-01" in result.text and "\n\nRevised plan:\n\n" in result.text
    assert result.text.count("Estimated total: ") == 2
    assert refine_request is not None
    assert refine_request.messages[-2].role == "assistant"
    assert "the plan has 1 days" in refine_request.messages[-1].content
    plan = TravelPlan.model_validate(result.events[-2].json["result"])
    assert len(plan.days) == 2 and plan.total_estimated_cost == 80


async def test_weather_failure_is_reported_and_the_plan_goes_on(
    live_server: Any, unreachable: str
) -> None:
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        result = await plan_stream(srv.url, body([plan_json()]))
    weather = next(f.json for f in result.events if f.type == "tool_result")
    assert weather["result"] is None and "cannot be reached" in weather["error"]
    assert any(s.startswith("The weather is unavailable") for s in statuses(result))
    assert result.types[-2:] == ["complete", "done"]
    assert "generate_draft" in steps(result)


async def test_a_draft_that_never_validates_is_completed_in_finalize(
    live_server: Any, unreachable: str
) -> None:
    half = plan_json(days=1)  # day 2 is missing in every reply
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        result = await plan_stream(srv.url, body([half], max_iterations=1, budget="medium"))
    assert steps(result).count("refine") == 1
    assert "completed it from its valid parts" in statuses(result)[-1]
    plan = TravelPlan.model_validate(result.events[-2].json["result"])
    assert [d.day for d in plan.days] == [1, 2]
    assert plan.days[0].activities[0].name == "Louvre"  # the valid part is kept
    assert "Completed automatically" in plan.notes and "day 2" in plan.notes


async def test_the_json_endpoint_returns_the_same_plan(live_server: Any, unreachable: str) -> None:
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        streamed = await plan_stream(srv.url, body([plan_json()], title="Mine"))
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            response = await client.post(
                "/api/plans/generate", json=body([plan_json()], title="Mine")
            )
    assert response.status_code == 200
    data = response.json()
    assert data["plan"] == streamed.events[-2].json["result"]
    assert data["plan"]["title"] == "Mine"
    assert data["provider"] == "scripted" and "finalize" not in data["steps"]
    assert data["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"end_date": "2030-05-30"}, "before start_date"),
        ({"end_date": "2030-06-15"}, "15 days long; a plan covers at most 14 days"),
        ({"start_date": "2030-02-30"}, "start_date"),
        ({"max_iterations": 6}, "max_iterations"),
        ({"budget": "lavish"}, "budget"),
        ({"location": ""}, "location"),
        ({"nights": 2}, "unknown field 'nights'"),
    ],
)
async def test_bad_requests_are_422_with_a_clear_message(
    live_server: Any, fields: dict[str, Any], needle: str
) -> None:
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        for path in ("/api/plans/generate/stream", "/api/plans/generate"):
            response = await client.post(path, json={**TRIP, **fields})
            assert response.status_code == 422, response.text
            error = response.json()
            assert error["code"] == "VALIDATION_ERROR"
            assert needle in error["message"], error


@pytest.fixture
def unreachable() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


# -- pure parts


def request(**fields: Any) -> PlanRequest:
    return PlanRequest.model_validate({**TRIP, **fields})


def test_parse_lenient_repairs_common_defects() -> None:
    assert parse_lenient('Sure!\n```json\n{"a": [1, 2,],}\n```') == {"a": [1, 2]}
    assert parse_lenient("{'a': 'it\\'s', b: True, c: None}") == {"a": "it's", "b": True, "c": None}
    assert parse_lenient('{"title": "Trip", "days": [{"day": 1, "title": "Ar') == {
        "title": "Trip",
        "days": [{"day": 1, "title": "Ar"}],
    }
    assert parse_lenient('{"a": 1, "b":') == {"a": 1}
    assert parse_lenient('noise {"a": "x } y"} more {"b": 2}') == {"a": "x } y"}
    assert parse_lenient("{“a”: “b”}") == {"a": "b"}
    with pytest.raises(ValueError, match="no JSON object"):
        parse_lenient("no json here")


def test_coercions() -> None:
    assert coerce_number("$1,200.50") == 1200.5
    assert coerce_number("about 20-30 EUR") == 20
    assert coerce_number("Free") == 0
    assert coerce_number("n/a") is None and coerce_number(True) is None
    assert coerce_time("9am") == "09:00" and coerce_time("2:15 PM") == "14:15"
    assert coerce_time("12 am") == "00:00" and coerce_time("25:00") is None


def test_check_draft_normalises_and_reports_problems() -> None:
    loose = json.loads(plan_json())
    loose["days"][0]["activities"][0].update(estimated_cost="$15", time="9:30 am")
    checked = check_draft("```" + json.dumps(loose) + "```", request())
    assert checked.problems == [] and checked.plan is not None
    assert checked.plan.days[0].activities[0].time == "09:30"
    assert checked.plan.total_estimated_cost == 75  # recomputed from the activities
    wrong = json.loads(plan_json())
    wrong["days"][1]["date"] = "2030-06-05"
    wrong["days"][1]["activities"] = []
    problems = check_draft(json.dumps(wrong), request()).problems
    assert problems == [
        "day 2, activities: List should have at least 1 item after validation, not 0"
    ]
    wrong["days"][1]["activities"] = [{"time": "10:00", "name": "x", "estimated_cost": 1}]
    assert check_draft(json.dumps(wrong), request()).problems == [
        "day 2 is dated 2030-06-05; it must be 2030-06-02"
    ]
    assert check_draft("nothing", request()).problems[0].startswith("the reply is not a JSON")


@pytest.mark.parametrize("budget", [None, "low", "medium", "high"])
def test_complete_plan_is_always_valid(budget: str | None) -> None:
    req = request(budget=budget, end_date="2030-06-05")
    for data in (None, json.loads(plan_json(days=1, cost=900)), {"days": "garbage"}):
        checked_data = check_draft(json.dumps(data or {}), req).data
        plan, fixes = complete_plan(checked_data, req, {date(2030, 6, 3)})
        assert check_draft(plan.model_dump_json(), req).problems == []
        assert fixes
    rainy = complete_plan(None, req, {date(2030, 6, 3)})[0]
    assert "rainy" in rainy.days[2].activities[0].description


def test_grammar_schema_fixes_days_and_keeps_costs_in_the_budget() -> None:
    from tokenrelay.providers.llama_structured import response_format_schema

    req = request(budget="low")
    schema = grammar_schema(req)
    days = schema["properties"]["days"]["prefixItems"]
    assert [d["properties"]["date"]["const"] for d in days] == ["2030-06-01", "2030-06-02"]
    assert max(cost_choices(req)) * 3 <= 100
    assert response_format_schema({"type": "json_schema", "json_schema": {"schema": schema}})
    lines = weather_lines({"daily": [{"date": "2030-06-01", "conditions": "fog"}]}, req)
    assert lines[0].startswith("2030-06-01: fog")


# -- the real model


@pytest.mark.model
async def test_the_local_model_plans_a_valid_two_day_trip(
    live_server: Any, unreachable: str
) -> None:
    async with live_server(
        provider="local", weather_base_url=unreachable, geocoding_base_url=unreachable
    ) as srv:
        result = await stream(
            srv.url,
            "POST",
            "/api/plans/generate/stream",
            json={**TRIP, "budget": "medium", "max_iterations": 1, "options": {"temperature": 0}},
            timeout=120,
        )
    assert result.types[-1] == "done", result.last()
    # the draft streamed as readable lines: a day line and its activities as each is written
    assert result.types.count("token") >= 3
    assert "Day 1 · 2030-" in result.text and "Estimated total: " in result.text
    plan = TravelPlan.model_validate(result.events[-2].json["result"])
    checked = check_draft(plan.model_dump_json(), request(budget="medium"))
    assert checked.problems == []
    assert [d.date.isoformat() for d in plan.days] == ["2030-06-01", "2030-06-02"]
    assert all(len(d.activities) >= 1 for d in plan.days)
    # with the grammar the model's own draft validates; nothing had to be completed
    assert "The plan is valid" in statuses(result), statuses(result)
