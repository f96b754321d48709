"""Travel planner endpoints: the workflow streamed as SSE, or its plan as JSON."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.i18n import current_locale
from tokenrelay.pipelines.planner import PlanJob, planner_pipeline
from tokenrelay.planner.models import PlanRequest, check_dates
from tokenrelay.server.collect import collected, error_json
from tokenrelay.server.deps import get_services, owner_of, start_stream, trace_id_for
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.locale import use_request_locale
from tokenrelay.server.sse import stream_response
from tokenrelay.services import Services
from tokenrelay.sessions.base import new_id

router = APIRouter(route_class=CheckedRoute, tags=["plans"])


async def _start(services: Services, body: PlanRequest, request: Request) -> tuple[str, str]:
    """Validate (→ plain 422s) and start the workflow; returns (stream_id, trace_id)."""
    use_request_locale(body.options.locale)
    check_dates(body.start_date, body.end_date)
    body = body.for_locale(current_locale())  # the plan's currency: the request's or the language's
    settings = services.settings
    provider = body.options.provider or settings.planner_provider or settings.provider
    services.providers.check(provider)
    trace_id = trace_id_for(request)
    owner = owner_of(request)
    job = PlanJob(
        stream_id=new_id(),
        trace_id=trace_id,
        request=body,
        provider=provider,
        owner=owner,
    )
    await start_stream(
        request, job.stream_id, partial(planner_pipeline, services, job), owner=owner
    )
    return job.stream_id, trace_id


@router.post("/api/plans/generate/stream", summary="Plan a trip, streamed as Server-Sent Events")
async def generate_plan_stream(body: PlanRequest, request: Request) -> Response:
    services = get_services(request)
    stream_id, trace_id = await _start(services, body, request)
    names = services.settings.event_names if body.event_names is None else body.event_names
    return stream_response(services, stream_id, event_names=names, trace_id=trace_id, starts=True)


@router.post("/api/plans/generate", summary="Plan a trip; the same workflow, the plan as JSON")
async def generate_plan(body: PlanRequest, request: Request) -> Response:
    services = get_services(request)
    stream_id, trace_id = await _start(services, body, request)
    result: dict[str, Any] = {"stream_id": stream_id, "trace_id": trace_id}
    statuses: list[str] = []
    async for event in collected(services, stream_id):
        kind = event.pop("type")
        if kind == "metadata":
            result.update(provider=event["provider"], model=event["model"])
        elif kind == "status":
            statuses.append(event["message"])
        elif kind == "complete":
            result["plan"] = event["result"]
        elif kind == "done":
            result.update(usage=event["usage"], processing_time_s=event["processing_time_s"])
        elif kind == "error":
            return error_json(event, trace_id, stream_id=stream_id)
    result["steps"] = statuses
    return JSONResponse(result, headers={"X-Trace-ID": trace_id})
