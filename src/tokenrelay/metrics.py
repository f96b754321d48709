"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 5)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 5000)


class _Off:
    """A collector that records nothing: `metrics_enabled=false`, to measure what metrics cost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def labels(self, *values: Any) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


class _LoopHistogramChild:
    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value


class LoopHistogram(Collector):
    """A labelled histogram for observations made on the event loop thread only.

    prometheus_client's `Histogram.observe` takes a lock per bucket and per sum; the
    inter-token gap is observed once per token, where that was a visible share of the
    relay's CPU per event (docs/benchmarks.md). On one thread no lock is needed: a bisect
    and two additions. Exposed in the same text format (`_bucket`, `_count`, `_sum`). Every
    per-provider histogram is one (each stream observes four of them, all on the loop).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = list(labelnames)
        self._bounds = tuple(float(b) for b in buckets)
        self._children: dict[tuple[str, ...], _LoopHistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> _LoopHistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _LoopHistogramChild(self._bounds)
        return child

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, child in list(self._children.items()):
            cumulative, running = [], 0
            for bound, count in zip((*self._bounds, float("inf")), child.counts, strict=True):
                running += count
                cumulative.append((_bound_text(bound), running))
            family.add_metric(list(values), cumulative, child.total)
        yield family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


@dataclass(frozen=True, slots=True)
class ProviderMetrics:
    """One provider's labelled children, looked up once (`labels()` takes a lock and builds a
    key each call; a stream used to make seven such calls)."""

    ttft: Any
    token_gap: Any
    tokens: Any
    stream_duration: Any
    tokens_per_second: Any
    first_event: Any


class Metrics:
    def __init__(self, enabled: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._providers: dict[str, ProviderMetrics] = {}
        r = self.registry
        Gauge, Counter, Histogram = (
            (_Gauge, _Counter, _Histogram) if enabled else (_Off, _Off, _Off)
        )
        self.active_streams = Gauge(
            "tokenrelay_active_streams", "Streams whose generation is running", registry=r
        )
        self.streams = Counter(
            "tokenrelay_streams",
            "Finished streams by outcome and error code",
            ["outcome", "code"],
            registry=r,
        )
        self.ttft = (LoopHistogram if enabled else _Off)(
            "tokenrelay_time_to_first_token_seconds",
            "From stream start to the first token",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.token_gap = (LoopHistogram if enabled else _Off)(
            "tokenrelay_inter_token_gap_seconds",
            "Gap between consecutive token events",
            ["provider"],
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tokenrelay_completion_tokens", "Completion tokens produced", ["provider"], registry=r
        )
        self.stream_duration = (LoopHistogram if enabled else _Off)(
            "tokenrelay_stream_duration_seconds",
            "Whole stream duration",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "tokenrelay_provider_errors",
            "Provider failures by provider and code",
            ["provider", "code"],
            registry=r,
        )
        self.cancel_latency = Histogram(
            "tokenrelay_cancel_latency_seconds",
            "From a cancel (explicit or disconnect) to the generation having stopped",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.disconnects = Counter(
            "tokenrelay_disconnects", "Clients that went away before the end", registry=r
        )
        self.resumes = Counter("tokenrelay_resumes", "Stream reads resumed from an id", registry=r)
        self.tool_calls = Counter(
            "tokenrelay_tool_calls",
            "Tool calls by tool and outcome",
            ["tool", "outcome"],
            registry=r,
        )
        self.retrieval_latency = Histogram(
            "tokenrelay_retrieval_seconds",
            "Document search latency",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self.provider_latency = (LoopHistogram if enabled else _Off)(
            "tokenrelay_provider_first_event_seconds",
            "From sending the request to a provider to its first event",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = (LoopHistogram if enabled else _Off)(
            "tokenrelay_tokens_per_second",
            "Completion tokens per second of a stream, from its first token to its end",
            ["provider"],
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "tokenrelay_rejected_requests",
            "Requests refused at the door, by reason (unauthorized, rate, streams, busy, body)",
            ["reason"],
            registry=r,
        )

    def provider(self, name: str) -> ProviderMetrics:
        found = self._providers.get(name)
        if found is None:
            found = self._providers[name] = ProviderMetrics(
                ttft=self.ttft.labels(name),
                token_gap=self.token_gap.labels(name),
                tokens=self.tokens.labels(name),
                stream_duration=self.stream_duration.labels(name),
                tokens_per_second=self.tokens_per_second.labels(name),
                first_event=self.provider_latency.labels(name),
            )
        return found

    def observe_generation(
        self, provider: str, completion_tokens: int, since_first_token_s: float
    ) -> None:
        """Tokens/s of one stream: the tokens after the first over the time since the first
        (skipped when too short to mean anything)."""
        if completion_tokens > 1 and since_first_token_s > 0.001:
            rate = (completion_tokens - 1) / since_first_token_s
            self.provider(provider).tokens_per_second.observe(rate)

    def count_rejected(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
