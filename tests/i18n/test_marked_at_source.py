"""Every text an end user can be shown is marked with `tr` where it is made, so that the
catalogue check (`test_catalogues.py`: every marked message has its Korean translation, and
none gives operator advice) covers all of them.

The scan reads the source (no import): the message and the suggestion of every error of ours
(`TokenRelayError` and its subclasses, `misconfigured`), a tool's `ToolError` and its
subclasses, a tool's failure (`failed`), tool progress (`progress`, `Progress`) may not be
English text made on the spot (a literal, an f-string, a concatenation, `str.format`); the
`message` of every `status`, `progress`, `tool_progress` and `error` event and a tool
result's `error` go through `localize` where the event is made. The OpenAI-compatible API
keeps OpenAI's English envelope (docs/i18n.md), and the client is not the server: both are
left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import tokenrelay

SRC = Path(tokenrelay.__file__).parent
ENGLISH_BY_DESIGN = (
    "client.py",
    "server/openai_format.py",
    "server/openai_models.py",
    "server/responses_format.py",
    "server/responses_request.py",
    "server/routes/openai_common.py",
    "server/routes/openai_compat.py",
    "server/routes/openai_responses.py",
)
ERROR_ROOTS = frozenset({"TokenRelayError", "ToolError"})
EVENTS = frozenset({"StatusEvent", "ProgressEvent", "ToolProgressEvent", "ToolResultEvent"})
USER_KEYWORDS = frozenset({"message", "suggestion"})


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _trees() -> dict[str, ast.Module]:
    return {
        path.relative_to(SRC).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(SRC.rglob("*.py"))
    }


def error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Our error classes by name: the roots and every class that derives from one."""
    found = set(ERROR_ROOTS)
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in found
                    and any(_name(base) in found for base in node.bases)
                ):
                    found.add(node.name)
                    grew = True
    return found


def made_on_the_spot(node: ast.expr) -> bool:
    """English text made here: a literal, an f-string, a concatenation or a format call."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(node.value)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return made_on_the_spot(node.left) or made_on_the_spot(node.right)
    if isinstance(node, ast.IfExp):
        return made_on_the_spot(node.body) or made_on_the_spot(node.orelse)
    if isinstance(node, ast.BoolOp):
        return any(made_on_the_spot(v) for v in node.values)
    if isinstance(node, ast.Call):
        return _name(node.func) in ("format", "join", "str")
    return False


def _user_texts(call: ast.Call, errors: set[str]) -> Iterator[ast.expr]:
    """The arguments of `call` that end users read."""
    name = _name(call.func)
    if name == "tr":
        return  # its keywords are the message's parameters
    if name in errors:
        yield from call.args[:1]
    elif name in ("misconfigured", "failed"):
        yield from call.args[1:2]
    elif name in ("progress", "Progress"):
        yield from call.args[:1]
    if name in errors or name == "misconfigured":
        yield from (k.value for k in call.keywords if k.arg in USER_KEYWORDS)


def offenders(trees: dict[str, ast.Module]) -> list[str]:
    errors = error_classes(trees)
    found: list[str] = []
    for rel, tree in trees.items():
        if rel in ENGLISH_BY_DESIGN or rel == "cli.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for arg in _user_texts(node, errors):
                if made_on_the_spot(arg):
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(arg)[:80]}")
            if _name(node.func) in EVENTS:
                for keyword in node.keywords:
                    if keyword.arg in ("message", "error") and not _localized(keyword.value):
                        found.append(f"{rel}:{node.lineno}: {keyword.arg} not localized")
    return found


def _localized(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _name(node.func) == "localize"


def test_every_text_for_users_is_marked_where_it_is_made() -> None:
    assert offenders(_trees()) == []


def test_the_errors_of_every_layer_are_found() -> None:
    classes = error_classes(_trees())
    assert {"StreamTimeout", "CalculationError", "EmbeddingFailed", "BodyTooLarge"} <= classes


@pytest.mark.parametrize(
    "source",
    [
        'raise StreamTimeout(f"no output for {s} s", suggestion=tr("retry"))',
        'raise StreamTimeout(tr("no output"), suggestion="retry")',
        'raise CalculationError("division by zero")',
        'return failed(call, f"{name} failed")',
        'await ctx.progress("Looking up " + place)',
        'yield Progress("step {}".format(i))',
        'emit(StatusEvent(message=tr("Writing")))',
        'raise misconfigured(BackendUnavailable, "no redis", "pip install redis")',
    ],
)
def test_the_scan_finds_english_made_on_the_spot(source: str) -> None:
    tree = ast.parse(
        "class CalculationError(ToolError): pass\n"
        "class StreamTimeout(TokenRelayError): pass\n"
        f"async def f():\n    {source}\n"
    )
    assert offenders({"module.py": tree}) != []


def test_the_scan_passes_marked_messages() -> None:
    tree = ast.parse(
        "class StreamTimeout(TokenRelayError): pass\n"
        "async def f():\n"
        '    await ctx.progress(tr("Looking up {place}", place=f"{a}, {b}"))\n'
        '    emit(StatusEvent(message=localize(tr("Writing"))))\n'
        '    raise StreamTimeout(tr("no output"), suggestion=tr("retry"),'
        ' details={"operator": f"x"})\n'
    )
    assert offenders({"module.py": tree}) == []
