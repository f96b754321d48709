"""Running the JavaScript clients in tests/js (installed by `make js` from its lock file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


def require_node() -> str:
    """The `node` program, or skip with the fix when it or the installed clients are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: install nodejs (Debian: apt install nodejs npm)")
    if not (JS_DIR / "node_modules" / ".installed").exists():
        pytest.skip("the JavaScript clients are not installed: run `make js`")
    return node


def run_node(
    script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Any:
    """Run one script of tests/js with node; it prints one JSON value last, which is returned.
    A failing script fails the test with its output."""
    node = require_node()
    proc = subprocess.run(
        [node, str(JS_DIR / script), *args],
        cwd=JS_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(f"node {script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"node {script} printed nothing; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])
