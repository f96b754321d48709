"""docs/architecture.md is the map of the code as built: every module under src/tokenrelay is
named there, and nothing it names is gone. A new module fails here until it has its line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tokenrelay"
DOC = ROOT / "docs" / "architecture.md"

# a table row's first cell: | `module.py` | ...
ROW = re.compile(r"^\| `([\w/]+\.py)` \|", re.MULTILINE)
# a section heading that names a folder: ### `providers/`: ...
SECTION = re.compile(r"^### `([\w/]+)/`", re.MULTILINE)


def documented() -> set[str]:
    """The modules the doc's tables name, as paths relative to the package. A folder's
    heading stands for its `__init__.py`."""
    names: set[str] = set()
    text = DOC.read_text(encoding="utf-8")
    parts = SECTION.split(text)
    # parts: [before any folder section, folder, body, folder, body, ...]
    names.update(ROW.findall(parts[0]))
    for folder, body in zip(parts[1::2], parts[2::2], strict=True):
        names.add(f"{folder}/__init__.py")
        names.update(f"{folder}/{name}" for name in ROW.findall(body))
    return names


def modules() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}


def test_every_module_is_on_the_map() -> None:
    missing = sorted(modules() - documented())
    assert not missing, f"docs/architecture.md does not name {missing}: add a line for each"


def test_the_map_names_no_module_that_is_gone() -> None:
    gone = sorted(documented() - modules())
    assert not gone, f"docs/architecture.md names {gone}, which no longer exist"
