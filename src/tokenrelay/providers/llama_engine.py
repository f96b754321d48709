"""Continuous-batching generation engine: one thread, one llama.cpp context, many sequences.

The engine thread loops over decode steps. Between two steps it

1. drops sequences whose consumer went away (cancel event set) or that finished, removing
   their cells from the KV cache so the slot is free;
2. admits waiting jobs first-in first-out while a sequence slot (llama.cpp `seq_id`) is free;
3. builds one batch: the last sampled token of every generating sequence, then prompt tokens of
   admitted-but-not-prefilled sequences, chunked (`prefill_chunk` per step) so a long prompt
   never stalls the others for long;
4. decodes it once, samples each sequence's next token from its own row of logits with its own
   sampler chain, and hands the new text to that sequence's consumer.

So sequences join and leave between decode steps, every active sequence advances one token per
step (round-robin fairness), and only this thread ever touches the llama context. Each
sequence has its own KV stream (`kv_unified=False`), so they cannot see each other's tokens.

Consumers receive `EngineText`, then exactly one `EngineDone` or `EngineFailed`, through the
`sink` callback they gave (called on the engine thread; it must be thread-safe, e.g.
`loop.call_soon_threadsafe`). A cancelled sequence gets no further events.
"""

from __future__ import annotations

import codecs
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tokenrelay.errors import ErrorCode, ProviderError, TokenRelayError, internal_error
from tokenrelay.i18n import tr
from tokenrelay.providers._stops import StopScanner
from tokenrelay.providers.llama_runtime import Batch, LlamaRuntime, Sampler

DoneReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class EngineText:
    text: str


@dataclass(frozen=True, slots=True)
class EngineDone:
    reason: DoneReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class EngineFailed:
    error: TokenRelayError


EngineEvent = EngineText | EngineDone | EngineFailed
Sink = Callable[[EngineEvent], None]


@dataclass(slots=True)
class Job:
    """One generation request. `cancel` may be set from any thread, at any time."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int
    sink: Sink
    grammar: str | None = None
    top_p: float | None = None  # None: the sampler's default (0.95)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class SequenceRecord:
    """What one finished (or cancelled) sequence did; kept in `EngineStats.recent`."""

    prompt_tokens: int
    tokens: tuple[int, ...]
    reason: str  # "stop" | "length" | "cancelled" | "error"


@dataclass(slots=True)
class EngineStats:
    """Counters written by the engine thread; safe to read from anywhere."""

    submitted: int = 0
    admitted: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    decode_steps: int = 0
    max_batch_sequences: int = 0
    recent: deque[SequenceRecord] = field(default_factory=lambda: deque(maxlen=64))


@dataclass(slots=True)
class _Sequence:
    job: Job
    slot: int
    sampler: Sampler
    prefilled: int = 0  # prompt tokens already in the KV cache
    pending: int | None = None  # sampled token not yet decoded
    logits_row: int = -1  # batch row whose logits belong to this sequence, this step
    tokens: list[int] = field(default_factory=list)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    stops: StopScanner | None = None  # when the job has stop strings

    @property
    def position(self) -> int:
        return self.prefilled + len(self.tokens) - (1 if self.pending is not None else 0)


class LlamaEngine:
    """Owns the runtime and the engine thread. `submit` jobs; `close` to stop."""

    def __init__(self, runtime: LlamaRuntime, *, prefill_chunk: int = 256) -> None:
        self.runtime = runtime
        self.n_slots = runtime.config.n_seq_max
        self.n_ctx_per_seq = runtime.n_ctx_per_seq
        self._prefill_chunk = max(1, min(prefill_chunk, runtime.config.n_batch - self.n_slots))
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: list[_Sequence] = []
        self._free_slots: list[int] = list(range(self.n_slots))
        self._closing = False
        self.stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name="tokenrelay-llama", daemon=True)
        self._thread.start()

    # -- called from any thread

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closing:
                raise ProviderError(
                    tr("the local model is shutting down"),
                    suggestion=tr("retry in a moment"),
                    code=ErrorCode.PROVIDER_UNAVAILABLE,
                )
            self.stats.submitted += 1
            self._waiting.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Stop `job` before its next token (or before it starts, if still queued)."""
        job.cancel.set()
        with self._cond:
            self._cond.notify()

    def busy(self) -> int:
        """Jobs waiting or running."""
        with self._cond:
            return len(self._waiting) + len(self._active)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.runtime.close()

    # -- engine thread

    def _run(self) -> None:
        batch = self.runtime.new_batch(self.runtime.config.n_batch)
        try:
            while True:
                try:
                    if not self._step(batch):
                        break
                except Exception as e:  # a bug must not leave consumers waiting forever
                    self._fail_active(internal_error(e))
        finally:
            self._fail_active(_shutting_down())
            batch.close()

    def _step(self, batch: Batch) -> bool:
        with self._cond:
            while not self._closing and not self._waiting and not self._active:
                self._cond.wait()
            if self._closing:
                for job in self._waiting:
                    self._emit(job, EngineFailed(_shutting_down()))
                self._waiting.clear()
                return False
            newcomers = self._take_waiting()
        for job, slot in newcomers:
            self._admit(job, slot)
        for seq in [s for s in self._active if s.job.cancel.is_set()]:
            self._leave(seq, "cancelled")
        if self._active:
            self._decode_once(batch)
        return True

    def _take_waiting(self) -> list[tuple[Job, int]]:
        """Under the lock: count cancelled queued jobs, pop FIFO jobs into free slots."""
        kept: deque[Job] = deque()
        for job in self._waiting:
            if job.cancel.is_set():
                self.stats.cancelled += 1
                self.stats.recent.append(SequenceRecord(len(job.prompt), (), "cancelled"))
            else:
                kept.append(job)
        self._waiting = kept
        taken: list[tuple[Job, int]] = []
        while self._waiting and self._free_slots:
            taken.append((self._waiting.popleft(), self._free_slots.pop(0)))
        return taken

    def _admit(self, job: Job, slot: int) -> None:
        try:
            sampler = self.runtime.make_sampler(
                temperature=job.temperature,
                seed=job.seed,
                grammar=job.grammar,
                top_p=job.top_p,
                frequency_penalty=job.frequency_penalty,
                presence_penalty=job.presence_penalty,
            )
        except TokenRelayError as e:
            self._release_slot(slot)
            self.stats.failed += 1
            self._emit(job, EngineFailed(e))
            return
        self.runtime.forget(slot)
        self.stats.admitted += 1
        stops = StopScanner(job.stop) if job.stop else None
        self._active.append(_Sequence(job=job, slot=slot, sampler=sampler, stops=stops))

    def _decode_once(self, batch: Batch) -> None:
        batch.clear()
        for seq in self._active:
            seq.logits_row = -1
            if seq.pending is not None:
                seq.logits_row = batch.add(seq.pending, seq.position, seq.slot, True)
                seq.pending = None
        budget = self._prefill_chunk
        for seq in self._active:
            remaining = len(seq.job.prompt) - seq.prefilled
            if remaining <= 0 or budget <= 0:
                continue
            take = min(remaining, budget)
            for i in range(seq.prefilled, seq.prefilled + take):
                last = i == len(seq.job.prompt) - 1
                row = batch.add(seq.job.prompt[i], i, seq.slot, last)
                if last:
                    seq.logits_row = row
            seq.prefilled += take
            budget -= take
        if batch.size == 0:
            return
        status = self.runtime.decode(batch)
        self.stats.decode_steps += 1
        if status != 0:
            self._fail_all(status)
            return
        stepping = [s for s in self._active if s.logits_row >= 0]
        self.stats.max_batch_sequences = max(self.stats.max_batch_sequences, len(stepping))
        for seq in stepping:
            self._advance(seq, self.runtime.sample(seq.sampler, seq.logits_row))

    def _advance(self, seq: _Sequence, token: int) -> None:
        if seq.job.cancel.is_set():
            self._leave(seq, "cancelled")
            return
        if self.runtime.is_eog(token):
            self._finish(seq, "stop")
            return
        seq.tokens.append(token)
        text = seq.decoder.decode(self.runtime.piece(token))
        stops = seq.stops
        if stops is not None:  # held back while it may be the start of a stop string
            text = stops.feed(text)
        if text and not self._emit(seq.job, EngineText(text)):
            self._leave(seq, "cancelled")
            return
        if stops is not None and stops.stopped:
            self._finish(seq, "stop")
            return
        if len(seq.tokens) >= seq.job.max_tokens:
            # an incomplete multi-byte character at the cut is dropped, never shown broken
            self._finish(seq, "length")
            return
        seq.pending = token

    def _finish(self, seq: _Sequence, reason: DoneReason) -> None:
        held = seq.stops.flush() if seq.stops is not None else ""
        if held and not self._emit(seq.job, EngineText(held)):
            self._leave(seq, "cancelled")
            return
        done = EngineDone(reason, len(seq.job.prompt), len(seq.tokens))
        self._leave(seq, reason)
        self._emit(seq.job, done)

    def _fail_all(self, status: int) -> None:
        self._fail_active(
            ProviderError(
                tr("the local model failed (status {status})", status=status),
                suggestion=tr("retry"),
                details={"operator": "if it keeps happening, lower TOKENRELAY_LOCAL_N_SEQ_MAX"},
                code=ErrorCode.PROVIDER_ERROR,
                retryable=True,
            )
        )

    def _fail_active(self, error: TokenRelayError) -> None:
        for seq in list(self._active):
            self._leave(seq, "error")
            self._emit(seq.job, EngineFailed(error))

    def _leave(self, seq: _Sequence, reason: str) -> None:
        self._active.remove(seq)
        seq.sampler.close()
        self.runtime.forget(seq.slot)
        if reason == "cancelled":
            self.stats.cancelled += 1
        elif reason == "error":
            self.stats.failed += 1
        else:
            self.stats.completed += 1
        self.stats.recent.append(SequenceRecord(len(seq.job.prompt), tuple(seq.tokens), reason))
        self._release_slot(seq.slot)

    def _release_slot(self, slot: int) -> None:
        with self._cond:
            self._free_slots.append(slot)
            self._free_slots.sort()

    @staticmethod
    def _emit(job: Job, event: EngineEvent) -> bool:
        """Deliver to the consumer; False when it is gone (its loop closed)."""
        if job.cancel.is_set():
            return False
        try:
            job.sink(event)
        except RuntimeError:
            job.cancel.set()
            return False
        return True


def _shutting_down() -> ProviderError:
    return ProviderError(
        tr("the local model is shutting down"),
        suggestion=tr("retry in a moment"),
        code=ErrorCode.PROVIDER_UNAVAILABLE,
    )
