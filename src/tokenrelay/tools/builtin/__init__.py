"""The built-in tools: weather, unit conversion, arithmetic, the clock and document search."""

from __future__ import annotations

from tokenrelay.tools.builtin.calculate import calculate
from tokenrelay.tools.builtin.clock import current_time
from tokenrelay.tools.builtin.documents import search_documents
from tokenrelay.tools.builtin.units import convert_units
from tokenrelay.tools.builtin.weather import get_weather

BUILTIN_TOOLS = (get_weather, convert_units, calculate, current_time, search_documents)

__all__ = [
    "BUILTIN_TOOLS",
    "calculate",
    "convert_units",
    "current_time",
    "get_weather",
    "search_documents",
]
