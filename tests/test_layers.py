"""Which modules may import which: the layers below the server know nothing of it, and the
pipelines know the runner only through the stream context (`streams/context.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

import tokenrelay

SRC = Path(tokenrelay.__file__).parent
BELOW_THE_SERVER = (
    "delivery",
    "pipelines",
    "streams",
    "sessions",
    "providers",
    "tools",
    "retrieval",
)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offenders(packages: tuple[str, ...], forbidden: str) -> list[str]:
    return sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for package in packages
        for path in (SRC / package).rglob("*.py")
        for name in _imports(path)
        if name == forbidden or name.startswith(forbidden + ".")
    )


def test_nothing_below_the_server_imports_from_it() -> None:
    assert _offenders(BELOW_THE_SERVER, "tokenrelay.server") == []


def test_pipelines_do_not_import_the_runner() -> None:
    assert _offenders(("pipelines",), "tokenrelay.streams.runner") == []
    # nor the whole of the services, which hold the runner and the log (pipelines/needs.py)
    assert _offenders(("pipelines",), "tokenrelay.services") == []


def test_the_log_and_the_events_know_no_wire_format() -> None:
    """The log stores `(seq, type, json)`; the encoders (`delivery/encoders.py`) make bytes."""
    assert _offenders(("streams", "pipelines"), "tokenrelay.delivery") == []
    events = _imports(SRC / "events.py")
    assert not [name for name in events if name.startswith("tokenrelay.delivery")]
