"""Which models the OpenAI-compatible API offers, and which provider answers a `model`.

A model is real or it is OpenAI's 404 `model_not_found`: never the default provider answering
under a name that was made up. What "can answer now" means per provider (`available`):

- a hosted provider (`openai`, `anthropic`, `gemini`) when it has its key, or for `openai` a
  base URL of an OpenAI-compatible server;
- `local` when its model file is there (the configured path, or the bundled package);
- the server's default provider always, and any provider already running;
- providers registered by name (third-party ones): always (their config is their own).

A request's `model` (`resolve`), in this order: a provider name (its default model); a
`provider/model` (for `local` and `scripted`, which have one model each, only that one); a
bare model id that is an available provider's default model, or of one's family (`gpt-…`,
`o…` → openai, `claude-…` → anthropic, `gemini-…` → gemini); any other id when the default
provider is an OpenAI-compatible server (whose models we cannot know).
Pure apart from the file check for the local model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, TokenRelayError
from tokenrelay.providers.base import Provider
from tokenrelay.providers.model_files import resolve_model_path

HOSTED = ("openai", "anthropic", "gemini")
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("openai", re.compile(r"^(gpt-|o\d|chatgpt-|text-|ft:)")),
    ("anthropic", re.compile(r"^claude-")),
    ("gemini", re.compile(r"^(gemini-|models/gemini-)")),
)
_DEFAULT_MODELS = {"scripted": "scripted-1", "local": "SmolLM2-135M-Instruct"}
_ONE_MODEL = frozenset(_DEFAULT_MODELS)  # providers that answer with one model only


class ModelNotFound(TokenRelayError):
    """OpenAI's 404 `model_not_found` (the route answers it in OpenAI's shape)."""

    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(
            f"The model {model!r} does not exist or you do not have access to it.",
            suggestion=f"use one of the models GET /v1/models lists: {', '.join(available)}",
            details={"param": "model"},
        )
        self.model = model


@dataclass(frozen=True, slots=True)
class Offered:
    """One provider that can answer: its name and its default model."""

    provider: str
    model: str


def _configured(settings: Settings, name: str) -> bool:
    if name == "openai":
        return settings.openai_api_key is not None or bool(settings.openai_base_url)
    if name == "anthropic":
        return settings.anthropic_api_key is not None
    if name == "gemini":
        return settings.gemini_api_key is not None
    if name == "local":
        try:
            resolve_model_path(settings.local_model_path)
        except TokenRelayError:
            return False
        return True
    return name != "scripted"  # the test provider: only as the default or when running


def _default_model(settings: Settings, name: str, loaded: Provider | None) -> str:
    if loaded is not None:
        return loaded.default_model
    if settings.provider == name and settings.model:
        return settings.model
    own = {
        "openai": settings.openai_model,
        "anthropic": settings.anthropic_model,
        "gemini": settings.gemini_model,
    }
    return own.get(name) or _DEFAULT_MODELS.get(name, name)


def available(settings: Settings, names: list[str], loaded: dict[str, Provider]) -> list[Offered]:
    """The providers that can answer now, the default first."""
    order = [settings.provider, *sorted(n for n in names if n != settings.provider)]
    offered: list[Offered] = []
    for name in order:
        if name not in names:
            continue
        if name == settings.provider or name in loaded or _configured(settings, name):
            offered.append(Offered(name, _default_model(settings, name, loaded.get(name))))
    return offered


def model_ids(offered: list[Offered]) -> list[tuple[str, str]]:
    """(model id, provider) of every id `/v1/models` lists: each provider by name, its
    `provider/model`, and its default model's bare id."""
    ids: list[tuple[str, str]] = []
    seen: set[str] = set()
    for o in offered:
        for model_id in (o.provider, f"{o.provider}/{o.model}", o.model):
            if model_id not in seen:
                seen.add(model_id)
                ids.append((model_id, o.provider))
    return ids


def _compatible_default(settings: Settings) -> bool:
    base = settings.openai_base_url
    return settings.provider == "openai" and bool(base) and "api.openai.com" not in str(base)


def resolve(model: str, settings: Settings, offered: list[Offered]) -> tuple[str, str | None]:
    """(provider, model or None for its default) for a request's `model`; ModelNotFound
    when nothing that can answer now has it."""
    by_name = {o.provider: o for o in offered}
    if model in by_name:
        return model, None
    prefix, sep, rest = model.partition("/")
    named = sep and rest and prefix in by_name
    if named and (prefix not in _ONE_MODEL or rest == by_name[prefix].model):
        return prefix, rest
    for o in offered:
        if model == o.model:
            return o.provider, model
    for provider, family in _FAMILIES:
        if provider in by_name and family.match(model):
            return provider, model
    if _compatible_default(settings):
        return "openai", model
    raise ModelNotFound(model, [i for i, _ in model_ids(offered)])
