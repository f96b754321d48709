"""Tools the model can call: the `@tool` registry, the runner and the built-in tools.

See docs/tools.md.
"""

from __future__ import annotations

from tokenrelay.tools.context import Progress, ToolContext, ToolError
from tokenrelay.tools.registry import ToolRegistry, registry_for
from tokenrelay.tools.tool import Tool, tool

__all__ = [
    "Progress",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "registry_for",
    "tool",
]
