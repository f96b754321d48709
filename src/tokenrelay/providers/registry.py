"""Provider registry: names to classes, imported lazily so that an SDK is only needed when used.

A provider class offers `from_settings(settings) -> instance`. Third-party providers can be
added with `register(name, "package.module:Class")`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, cast

from tokenrelay.config import Settings
from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import Provider

BUILTIN_PROVIDERS: dict[str, str] = {
    "local": "tokenrelay.providers.local:LocalProvider",
    "scripted": "tokenrelay.providers.scripted:ScriptedProvider",
    "openai": "tokenrelay.providers.openai:OpenAIProvider",
    "anthropic": "tokenrelay.providers.anthropic:AnthropicProvider",
    "gemini": "tokenrelay.providers.gemini:GeminiProvider",
}


class _ProviderClass(Protocol):
    @classmethod
    def from_settings(cls, settings: Settings) -> Provider: ...


def _load(target: str) -> _ProviderClass:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(_ProviderClass, getattr(module, attr))


class ProviderRegistry:
    """Builds each provider once, on first use, and closes them all at shutdown."""

    def __init__(self, settings: Settings, targets: dict[str, str] | None = None) -> None:
        self._settings = settings
        self._targets = dict(BUILTIN_PROVIDERS if targets is None else targets)
        self._instances: dict[str, Provider] = {}

    def names(self) -> list[str]:
        return sorted(self._targets)

    def register(self, name: str, target: str | Provider) -> None:
        if isinstance(target, str):
            self._targets[name] = target
        else:
            self._targets[name] = f"<instance {name}>"
            self._instances[name] = target

    def check(self, name: str) -> None:
        """Raise VALIDATION_ERROR for a provider name we do not know."""
        if name not in self._targets:
            raise ValidationError(
                tr("unknown provider {name!r}", name=name),
                suggestion=tr("choose one of: {names}", names=", ".join(self.names())),
            )

    def get(self, name: str) -> Provider:
        self.check(name)
        instance = self._instances.get(name)
        if instance is None:
            instance = _load(self._targets[name]).from_settings(self._settings)
            self._instances[name] = instance
        return instance

    def loaded(self) -> dict[str, Provider]:
        return dict(self._instances)

    async def aclose(self) -> None:
        for instance in self._instances.values():
            close: Any = getattr(instance, "aclose", None)
            if close is not None:
                await close()
        self._instances.clear()
