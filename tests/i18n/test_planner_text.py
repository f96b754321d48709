"""The planner in Korean and English: its draft streams as readable text with the costs in
the language's currency (KRW, USD) or the request's, its messages are in the language, and
the plan in `complete` still validates."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers import stream
from tokenrelay.planner.models import PlanRequest, TravelPlan
from tokenrelay.planner.prompts import cost_choices

HANGUL = re.compile(r"[가-힣]")


@pytest.fixture
def unreachable() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def seoul(cost: float) -> str:
    days = [
        {
            "day": i + 1,
            "date": f"2030-06-0{i + 1}",
            "title": title,
            "activities": [
                {"time": "09:00", "name": name, "description": "산책", "estimated_cost": cost},
                {"time": "12:30", "name": "점심", "description": "한식", "estimated_cost": cost},
            ],
        }
        for i, (title, name) in enumerate([("궁궐", "경복궁"), ("시장", "광장시장")])
    ]
    plan = {"title": "서울 이틀", "days": days, "total_estimated_cost": 4 * cost, "notes": ""}
    return json.dumps({**plan, "currency": "XXX"}, ensure_ascii=False)


def body(reply: str, **fields: Any) -> dict[str, Any]:
    return {
        "location": "Seoul",
        "start_date": "2030-06-01",
        "end_date": "2030-06-02",
        "budget": "low",
        **fields,
        "options": {"scripted": {"replies": [reply], "tokens": 5}, **fields.pop("options", {})},
    }


async def _plan(srv: Any, payload: dict[str, Any], **kwargs: Any) -> Any:
    return await stream(srv.url, "POST", "/api/plans/generate/stream", json=payload, **kwargs)


def _messages(result: Any, kind: str) -> list[str]:
    return [f.json["message"] for f in result.events if f.type == kind]


async def test_korean_readable_draft_in_won(live_server, unreachable: str) -> None:
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        result = await _plan(srv, body(seoul(15000)), headers={"Accept-Language": "ko"})
    text = result.text
    assert text.startswith(
        "서울 이틀\n\n1일차 · 2030-06-01: 궁궐\n- 09:00 경복궁: 산책 (15,000원)\n"
    )
    assert "\n2일차 · 2030-06-02: 시장\n" in text
    assert text.endswith("예상 합계: 60,000원\n")
    assert "{" not in text and '"' not in text
    plan = TravelPlan.model_validate(result.events[-2].json["result"])
    assert plan.currency == "KRW" and plan.total_estimated_cost == 60000
    # every progress, status and tool_progress message is in Korean
    for kind in ("progress", "status", "tool_progress"):
        said = _messages(result, kind)
        assert said and all(HANGUL.search(m) for m in said), (kind, said)
    assert "일정이 검증을 통과했습니다" in _messages(result, "status")


async def test_english_readable_draft_in_dollars(live_server, unreachable: str) -> None:
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        result = await _plan(srv, body(seoul(20), options={"locale": "en"}))
    assert "Day 1 · 2030-06-01: 궁궐\n- 09:00 경복궁: 산책 ($20)\n" in result.text
    assert result.text.endswith("Estimated total: $80\n")
    assert "The plan is valid" in _messages(result, "status")
    assert TravelPlan.model_validate(result.events[-2].json["result"]).currency == "USD"


async def test_options_locale_and_a_currency_of_the_request(live_server, unreachable: str) -> None:
    async with live_server(weather_base_url=unreachable, geocoding_base_url=unreachable) as srv:
        result = await _plan(
            srv,
            body(seoul(20), currency="EUR", options={"locale": "ko"}),
            headers={"Accept-Language": "en"},
        )
    assert "1일차 · 2030-06-01: 궁궐\n- 09:00 경복궁: 산책 (€20)\n" in result.text
    assert TravelPlan.model_validate(result.events[-2].json["result"]).currency == "EUR"


async def test_a_korean_budget_is_in_won() -> None:
    request = PlanRequest.model_validate(body("", budget="low")).for_locale("ko")
    assert request.plan_currency == "KRW" and request.budget_limit == 260_000
    assert max(cost_choices(request)) * 3 <= 130_000 and len(cost_choices(request)) > 5
    english = PlanRequest.model_validate(body("", budget="low")).for_locale("en")
    assert english.plan_currency == "USD" and english.budget_limit == 200
    own = PlanRequest.model_validate(body("", currency="THB", daily_budget=3000))
    assert own.budget_limit == 6000


async def test_a_korean_validation_error_of_the_planner(live_server) -> None:
    import httpx

    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/plans/generate/stream",
            json=body("", end_date="2030-05-01", options={"locale": "ko"}),
        )
    assert response.status_code == 422
    assert response.json()["message"] == "종료일 2030-05-01이(가) 시작일 2030-06-01보다 앞섭니다"
