"""What a pipeline may use of the server's long-lived parts (`services.Services` has them).

Neither the runner nor the stream log: a pipeline's one output is its stream context's `emit`
(streams/context.py), and it cannot reach another stream or the runner's bookkeeping.
"""

from __future__ import annotations

from typing import Any, Protocol

from tokenrelay.config import Settings
from tokenrelay.metrics import Metrics
from tokenrelay.providers.registry import ProviderRegistry
from tokenrelay.sessions.base import SessionStore


class PipelineServices(Protocol):
    settings: Settings
    providers: ProviderRegistry
    sessions: SessionStore
    metrics: Metrics
    documents: Any  # retrieval.DocumentStore, or None without retrieval
    replica_id: str
