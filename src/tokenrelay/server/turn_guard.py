"""One turn at a time per session: is the session's previous turn still running?

Before a turn on a named session starts, the route asks the session store which turn holds
the session's claim (sessions/base.py). The holder still runs when

- it is this replica's: the runner still runs its stream;
- it is another replica's: that replica's heartbeat is fresh (sessions/recovery.py) and the
  stream is in the shared log and not finished (without a shared log, the heartbeat alone).

Then the turn is refused with `409 SESSION_BUSY` before its stream starts. Otherwise the
holder is stale: its replica died, or its stream ended without releasing the claim (the
session database was unreachable at its end), or the log has forgotten it. The new turn then
names it as its `takeover`, and the store's conditional update replaces exactly that claim.
Two turns that pass this check at once still meet in the store: one claims the session, the
other's stream ends with SESSION_BUSY before its first event (its HTTP status, as every error
known before the first event, server/sse.py).
"""

from __future__ import annotations

from tokenrelay.services import Services
from tokenrelay.sessions.base import session_busy
from tokenrelay.sessions.recovery import STALE_PERIODS


def stale_after_s(services: Services) -> float:
    """How old a replica's heartbeat may be before its turns are taken over."""
    if services.heartbeat is not None:
        return services.heartbeat.stale_after_s
    return STALE_PERIODS * services.settings.replica_heartbeat_s


async def free_or_stale(
    services: Services, session_id: str, owner: str | None, *, replacing: str | None = None
) -> str | None:
    """None when no turn holds the session; the stream of a stale holder (or of `replacing`,
    a stream the caller has just stopped to answer again) that the new turn may take over.
    SESSION_BUSY when the holder still runs."""
    holder = await services.sessions.running_turn(
        session_id, owner=owner, stale_after_s=stale_after_s(services)
    )
    if holder is None:
        return None
    stream_id = holder.stream_id
    if stream_id == replacing:
        return stream_id
    if holder.replica_id == services.replica_id:
        running = services.runner.is_running(stream_id)
    elif not holder.replica_alive:
        running = False
    elif services.shared_log:
        info = await services.log.info(stream_id)
        running = info is not None and not info.finished
    else:  # another live process whose log this one cannot read: trust its heartbeat
        running = True
    if running:
        raise session_busy(session_id, stream_id)
    return stream_id
