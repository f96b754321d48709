"""`current_time`: the date and time now in an IANA time zone (zoneinfo)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from tokenrelay.i18n import tr
from tokenrelay.tools.context import ToolError
from tokenrelay.tools.tool import tool


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ToolError(
            tr(
                "unknown time zone {name!r}; use an IANA name like Europe/Paris, Asia/Seoul or UTC",
                name=name,
            )
        ) from e


def describe_time(now: datetime) -> dict[str, Any]:
    """A zone-aware datetime → the tool's result (pure)."""
    offset = now.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return {
        "timezone": str(now.tzinfo),
        "iso": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S"),
        "weekday": now.strftime("%A"),
        "utc_offset": f"{sign}{hours:02d}:{mins:02d}",
    }


@tool
def current_time(
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC",
) -> dict[str, Any]:
    """Get the current date and time in a time zone.

    Args:
        timezone: an IANA time zone name such as "Europe/Paris", "Asia/Seoul" or "UTC"
    """
    return describe_time(datetime.now(UTC).astimezone(zone(timezone)))
