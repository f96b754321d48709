"""The travel planner workflow as events: gather_context → generate_draft → validate →
refine (up to `max_iterations`) → finalize → complete → done. See docs/planner.md.

Each step is announced with a `progress` event (step, message, 0–100) and a `status` event.
The weather comes from the `get_weather` tool, with its `tool_call`/`tool_progress`/
`tool_result` events; when it fails the plan goes on without it. The model drafts JSON; the
user reads it as text in their language (`planner/render.py`): the `token` events carry
that text, not the JSON. Messages and the plan's currency follow the stream's language
(`i18n.current_locale`) unless the request names a currency. A draft the model never gets
right is completed from its valid parts in `finalize`,
so the plan in `complete` always validates.

Every event is emitted into the stream's context (`streams/context.py`); the pipeline returns
its `done` event, which the runner stores.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from tokenrelay.errors import ProviderError
from tokenrelay.events import (
    CompleteEvent,
    DoneEvent,
    MetadataEvent,
    ProgressEvent,
    StatusEvent,
    ToolCallEvent,
    UsageInfo,
    token_json,
)
from tokenrelay.i18n import current_locale, localize, tr
from tokenrelay.pipelines.agent import (
    SINGLE_SHOT_TOOL_PROVIDERS,
    Timing,
    ToolSetup,
    result_event,
    run_calls,
    stream_round,
)
from tokenrelay.pipelines.answer import Answer
from tokenrelay.pipelines.needs import PipelineServices
from tokenrelay.planner.models import PlanRequest, TravelPlan
from tokenrelay.planner.prompts import (
    draft_messages,
    draft_schema,
    grammar_schema,
    refine_messages,
    response_format,
)
from tokenrelay.planner.render import DraftText
from tokenrelay.planner.validate import Checked, check_draft, complete_plan
from tokenrelay.providers.base import ChatMessage, Provider, ProviderRequest, ToolCall
from tokenrelay.streams.context import StreamContext
from tokenrelay.tools.registry import registry_for
from tokenrelay.tools.runner import ToolOutcome

GRAMMAR_PROVIDERS = frozenset({"local"})  # JSON schema enforced by a grammar: the tight schema
_RAIN_WORDS = ("rain", "drizzle", "shower", "snow", "thunder")


@dataclass(frozen=True)
class PlanJob:
    stream_id: str
    trace_id: str
    request: PlanRequest
    provider: str
    owner: str | None = None


@dataclass
class _Run:
    """What the steps share: the provider, its answer so far and the best draft."""

    services: PipelineServices
    stream: StreamContext
    job: PlanJob
    provider: Provider
    answer: Answer
    timing: Timing
    weather: dict[str, Any] | None = None
    best: Checked | None = None
    locale: str = "en"
    shown: int = 0  # token events of readable text emitted

    def say(self, message: str) -> str:
        return localize(message, self.locale)

    @property
    def request(self) -> PlanRequest:
        return self.job.request


def _progress(step: str, message: str, progress: float) -> ProgressEvent:
    return ProgressEvent(step=step, message=localize(message), progress=round(progress, 1))


def _status(message: str) -> StatusEvent:
    return StatusEvent(message=localize(message))


class _ReadableDraft(StreamContext):
    """The stream as `stream_round` sees it while the model drafts: its token events (the
    model's JSON) become the draft's readable text; everything else goes through as is."""

    __slots__ = ("_outer", "_run", "text")

    def __init__(self, run: _Run, text: DraftText) -> None:
        outer = run.stream
        super().__init__(outer.stream_id, outer.deadline, self._emit)
        self._outer = outer
        self._run = run
        self.text = text

    @property
    def cancelled(self) -> bool:
        return self._outer.cancelled

    def generation_stopped(self) -> None:
        self._outer.generation_stopped()

    def _emit(self, event: Any) -> None:
        if isinstance(event, str):  # a token's JSON (events.token_json)
            self.show(self.text.feed(orjson.loads(event)["content"]))
        else:
            self._outer.emit(event)

    def show(self, text: str) -> None:
        if text:
            self._outer.emit(token_json(text, self._run.shown))
            self._run.shown += 1


def forecast_days(request: PlanRequest, today: date) -> int:
    """Forecast days to ask for so the trip is covered when it is near (the API gives <= 16)."""
    return max(1, min(16, (request.end_date - today).days + 1))


def rainy_dates(weather: dict[str, Any] | None) -> set[date]:
    found: set[date] = set()
    for day in (weather or {}).get("daily") or []:
        wet = any(w in str(day.get("conditions", "")) for w in _RAIN_WORDS)
        chance = day.get("precipitation_probability_pct")
        if wet or (isinstance(chance, int | float) and chance >= 60):
            try:
                found.add(date.fromisoformat(str(day.get("date"))))
            except ValueError:
                continue
    return found


async def _gather_context(run: _Run) -> None:
    request = run.request
    services = run.services
    emit = run.stream.emit
    where = request.location
    emit(_progress("gather_context", tr("Checking the weather in {place}", place=where), 5))
    emit(_status(tr("Gathering context: the weather in {place}", place=where)))
    registry = registry_for(services.settings)
    weather_tool = registry.get("get_weather")
    if weather_tool is None:
        emit(_status(tr("No weather tool is installed; planning without the weather")))
        return
    setup = ToolSetup(
        registry=registry,
        specs=(weather_tool.spec,),
        max_rounds=1,
        timeout_s=services.settings.tool_timeout_s,
        owner=run.job.owner,
    )
    call = ToolCall(
        id=f"weather_{run.job.stream_id[:8]}",
        name="get_weather",
        arguments={"location": request.location, "days": forecast_days(request, date.today())},
    )
    emit(ToolCallEvent(call_id=call.id, tool=call.name, args=call.arguments))
    async for item in run_calls(services, setup, [call]):
        if isinstance(item, ToolOutcome):
            services.metrics.tool_calls.labels(call.name, item.outcome).inc()
            emit(result_event(item))
            if item.ok and isinstance(item.result, dict):
                run.weather = item.result
            else:
                emit(_status(tr("The weather is unavailable; planning without it")))
        else:
            emit(item)
    emit(_progress("gather_context", tr("Context gathered"), 10))


def _provider_request(run: _Run, messages: list[ChatMessage]) -> ProviderRequest:
    request = run.request
    options = request.options
    settings = run.services.settings
    grammar = run.provider.name in GRAMMAR_PROVIDERS
    schema = grammar_schema(request) if grammar else draft_schema()
    extra: dict[str, Any] = {}
    if options.scripted is not None:
        extra["scripted"] = options.scripted.model_dump(exclude_unset=True)
    budget_tokens = 200 + 250 * len(request.dates)
    return ProviderRequest(
        messages=tuple(messages),
        model=options.model,
        temperature=options.temperature,
        max_tokens=options.max_tokens or min(settings.planner_max_tokens, budget_tokens),
        response_format=response_format(schema),
        extra=extra,
    )


async def _write(run: _Run, messages: list[ChatMessage], into: list[str]) -> None:
    """Stream one draft as readable text; the model's JSON is appended to `into`."""
    start = len(run.answer.parts)
    provider_request = _provider_request(run, messages)
    view = _ReadableDraft(run, DraftText(run.request.plan_currency, run.locale))
    if into:  # a refine round: the text so far stays, the new draft follows it
        view.show("\n\n" + run.say(tr("Revised plan:")) + "\n\n")
    await stream_round(run.services, view, run.provider, provider_request, run.answer, run.timing)
    view.show(view.text.finish())
    into.append("".join(run.answer.parts[start:]))


def _validated(run: _Run, text: str, progress: float) -> tuple[Checked, list[Any]]:
    checked = check_draft(text, run.request)
    if (
        run.best is None
        or checked.plan is not None
        or (checked.data is not None and len(checked.problems) <= len(run.best.problems))
    ):
        run.best = checked
    message: str
    if checked.plan is not None:
        message = tr("The plan is valid")
    else:
        count = len(checked.problems)
        listed = "; ".join(checked.problems[:3])  # the model's to fix: said in English
        if count == 1:
            message = tr("The plan has 1 problem: {problems}", problems=listed)
        else:
            message = tr("The plan has {count} problems: {problems}", count=count, problems=listed)
    return checked, [_progress("validate", message, progress), _status(message)]


async def planner_pipeline(
    services: PipelineServices, job: PlanJob, stream: StreamContext
) -> DoneEvent:
    """The workflow's events, emitted into `stream`; returns its `done` event."""
    request = job.request
    provider = services.providers.get(job.provider)
    model = request.options.model or provider.default_model
    run = _Run(services, stream, job, provider, Answer(), Timing(), locale=current_locale())
    emit = stream.emit
    plan_id = uuid.uuid4().hex
    emit(
        MetadataEvent(
            stream_id=job.stream_id,
            session_id="",
            message_id=plan_id,
            trace_id=job.trace_id,
            provider=provider.name,
            model=model,
        )
    )
    await _gather_context(run)

    emit(_progress("generate_draft", tr("Writing a draft plan"), 15))
    emit(_status(tr("Writing a draft plan for {days} days", days=len(request.dates))))
    base = draft_messages(request, run.weather, run.locale)
    texts: list[str] = []
    await _write(run, base, texts)
    checked, events = _validated(run, texts[-1], 55)
    for event in events:
        emit(event)

    rounds = request.max_iterations
    done_rounds = 0
    keep_draft = provider.name not in SINGLE_SHOT_TOOL_PROVIDERS  # small context: summarise
    while checked.plan is None and done_rounds < rounds:
        done_rounds += 1
        share = 55 + 35 * done_rounds / (rounds + 1)
        said = tr(
            "Refining the plan (round {round} of up to {rounds})", round=done_rounds, rounds=rounds
        )
        emit(_progress("refine", said, share))
        emit(_status(tr("Refining: {problems}", problems="; ".join(checked.problems[:3]))))
        messages = refine_messages(base, texts[-1], checked.problems, keep_draft=keep_draft)
        try:
            await _write(run, messages, texts)
        except ProviderError as exc:
            stopped = tr(
                "Refining stopped: {reason}; finalizing the best draft so far", reason=exc.message
            )
            emit(_status(stopped))
            break
        checked, events = _validated(run, texts[-1], share + 2)
        for event in events:
            emit(event)

    emit(_progress("finalize", tr("Finalizing the plan"), 95))
    plan, fixes = _finalize(run)
    if fixes:
        emit(
            _status(
                tr(
                    "The model's plan did not validate after {rounds} refine rounds; completed"
                    " it from its valid parts: {fixes}",
                    rounds=done_rounds,
                    fixes="; ".join(fixes),
                )
                if done_rounds
                else tr(
                    "The model's plan did not validate; completed it from its valid parts: {fixes}",
                    fixes="; ".join(fixes),
                )
            )
        )
    else:
        emit(_status(tr("The plan is ready")))
    answer = run.answer
    emit(CompleteEvent(result=plan.model_dump(mode="json")))
    return DoneEvent.model_validate(
        {
            "session_id": "",
            "message_id": plan_id,
            "finish_reason": answer.finish_reason or "stop",
            "usage": UsageInfo(
                prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens
            ),
            "total_chunks": answer.chunks,
            "ttft_s": round(run.timing.ttft, 6) if run.timing.ttft is not None else None,
            "processing_time_s": round(time.monotonic() - run.timing.started, 6),
            "history_length": 0,
        }
    )


def _finalize(run: _Run) -> tuple[TravelPlan, list[str]]:
    best = run.best
    if best is not None and best.plan is not None:
        return best.plan, []
    data = best.data if best is not None else None
    plan, fixes = complete_plan(data, run.request, rainy_dates(run.weather))
    return plan, fixes or ["the draft was checked again and normalised"]
