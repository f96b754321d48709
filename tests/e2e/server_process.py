"""A real `tokenrelay serve` process on a free loopback port, for clients that need their own
event loop (the sync `openai` SDK, the CLI) or a browser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.processes import ServerProcess, serve

__all__ = ["ServerProcess", "tokenrelay_serve"]


@contextlib.contextmanager
def tokenrelay_serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """`tokenrelay serve --provider scripted` (unless `args` say otherwise) until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cli_args = ["--data-dir", str(data_dir), *args]
    if "--provider" not in args:
        cli_args += ["--provider", "scripted"]
    with serve(
        data_dir, "server", args=cli_args, env={"TOKENRELAY_LOG_LEVEL": "warning", **(env or {})}
    ) as server:
        yield server
