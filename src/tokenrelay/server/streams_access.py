"""Who may read or cancel a stream: it must exist, and belong to the caller's key."""

from __future__ import annotations

from tokenrelay.services import Services
from tokenrelay.streams.log import StreamInfo, not_found


async def check_stream_access(services: Services, stream_id: str, owner: str | None) -> StreamInfo:
    """The stream's info; STREAM_NOT_FOUND when unknown, expired, or another key's."""
    info = await services.log.info(stream_id)
    if info is None or info.owner != owner:
        raise not_found(stream_id)
    return info
