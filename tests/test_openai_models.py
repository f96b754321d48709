"""Which provider answers a `model`, and which models are offered (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from tokenrelay.config import Settings
from tokenrelay.server.openai_models import ModelNotFound, Offered, available, model_ids, resolve

OFFERED = [
    Offered("local", "SmolLM2-135M-Instruct"),
    Offered("openai", "gpt-4o-mini"),
    Offered("scripted", "scripted-1"),
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("scripted", ("scripted", None)),
        ("openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gpt-4.1", ("openai", "gpt-4.1")),
        ("o3-mini", ("openai", "o3-mini")),
        ("scripted-1", ("scripted", "scripted-1")),
        ("SmolLM2-135M-Instruct", ("local", "SmolLM2-135M-Instruct")),
    ],
)
def test_resolve_model(model: str, expected: tuple[str, str | None]) -> None:
    assert resolve(model, Settings(provider="local"), OFFERED) == expected


@pytest.mark.parametrize(
    "model",
    [
        "gpt-nonexistent-but-no-openai",
        "local/",
        "local/nonexistent-model",
        "claude-3",
        "anthropic/claude",
        "x",
    ],
)
def test_unknown_models_are_not_found(model: str) -> None:
    offered = [o for o in OFFERED if o.provider != "openai"]
    with pytest.raises(ModelNotFound) as caught:
        resolve(model.removesuffix("-but-no-openai"), Settings(provider="local"), offered)
    assert "scripted" in caught.value.suggestion


def test_an_openai_compatible_default_takes_any_model_name() -> None:
    settings = Settings(provider="openai", openai_base_url="http://127.0.0.1:11434/v1")
    assert resolve("llama3.2:1b", settings, [Offered("openai", "gpt-4o-mini")]) == (
        "openai",
        "llama3.2:1b",
    )


def test_only_providers_that_can_answer_are_offered(tmp_path: Path) -> None:
    names = ["anthropic", "gemini", "local", "openai", "scripted"]
    missing = tmp_path / "none.gguf"
    bare = Settings(provider="scripted", local_model_path=missing)
    assert [o.provider for o in available(bare, names, {})] == ["scripted"]
    keyed = Settings(
        provider="scripted",
        local_model_path=missing,
        anthropic_api_key=SecretStr("sk-ant-test"),
    )
    offered = available(keyed, names, {})
    assert offered == [Offered("scripted", "scripted-1"), Offered("anthropic", "claude-sonnet-4-6")]
    ids = [i for i, _ in model_ids(offered)]
    assert ids == [
        "scripted",
        "scripted/scripted-1",
        "scripted-1",
        "anthropic",
        "anthropic/claude-sonnet-4-6",
        "claude-sonnet-4-6",
    ]
