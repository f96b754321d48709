"""The tool registry: the tools of one app, by name.

`ToolRegistry` holds the built-ins (tools/builtin/), the `tokenrelay.tools` entry-point group
(third-party packages) and the modules named in `TOKENRELAY_TOOL_MODULES`. `@tool` itself is
tools/tool.py.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from tokenrelay.config import Settings
from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ToolSpec
from tokenrelay.tools.builtin import BUILTIN_TOOLS
from tokenrelay.tools.tool import Tool, collect_tools

logger = logging.getLogger("tokenrelay.tools")

ENTRY_POINT_GROUP = "tokenrelay.tools"


class ToolRegistry:
    """The tools one app offers, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._all: tuple[ToolSpec, ...] | None = None  # specs(None), made once per change
        for t in tools:
            self.add(t)

    def add(self, item: Tool, *, replace: bool = False) -> None:
        if item.name in self._tools and not replace and self._tools[item.name] is not item:
            raise ValueError(
                f"a tool named {item.name!r} is already registered: "
                "give yours another name with @tool(name=...)"
            )
        self._tools[item.name] = item
        self._all = None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self, allow: Iterable[str] | None = None) -> tuple[ToolSpec, ...]:
        """Specs to offer the model: all tools, or those in the allow-list (in its order)."""
        if allow is None:
            if self._all is None:
                self._all = tuple(self._tools[n].spec for n in self.names())
            return self._all
        return tuple(self._tools[n].spec for n in dict.fromkeys(allow) if n in self._tools)

    def check(self, names: Iterable[str]) -> None:
        """Raise VALIDATION_ERROR for names that are not registered tools."""
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise ValidationError(
                tr("unknown tool(s): {names}", names=", ".join(unknown)),
                suggestion=tr("choose from: {names}", names=", ".join(self.names())),
            )

    def load_entry_points(self, found: Iterable[EntryPoint] | None = None) -> list[str]:
        """Add the tools of the `tokenrelay.tools` entry points; a broken one is logged and
        skipped so that one bad plugin does not take the server down. Returns the names added."""
        added: list[str] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP) if found is None else found:
            try:
                for t in collect_tools(ep.load()):
                    self.add(t)
                    added.append(t.name)
            except Exception:
                logger.exception(
                    "tool plugin %r (%s) could not be loaded; fix or uninstall that package",
                    ep.name,
                    ep.value,
                )
        return added

    def load_modules(self, modules: Iterable[str]) -> list[str]:
        """Add the @tool functions of importable modules (TOKENRELAY_TOOL_MODULES)."""
        added: list[str] = []
        for module_name in modules:
            try:
                for t in collect_tools(importlib.import_module(module_name)):
                    self.add(t)
                    added.append(t.name)
            except Exception:
                logger.exception(
                    "tool module %r could not be loaded; fix it or TOKENRELAY_TOOL_MODULES",
                    module_name,
                )
        return added


def default_registry(modules: Iterable[str] = ()) -> ToolRegistry:
    """Built-ins, then entry-point plugins, then the named modules."""
    registry = ToolRegistry(BUILTIN_TOOLS)
    registry.load_entry_points()
    registry.load_modules(modules)
    return registry


@functools.lru_cache(maxsize=16)
def _cached_registry(modules: tuple[str, ...]) -> ToolRegistry:
    return default_registry(modules)


def registry_for(settings: Settings) -> ToolRegistry:
    """The registry for these settings, built once per process (tools are stateless; what
    they need at run time comes through `ToolContext`)."""
    return _cached_registry(tuple(settings.tool_modules))
