"""A tolerant JSON reader for model output. Pure functions, no I/O.

Models wrap JSON in prose or code fences, leave trailing commas, use single quotes or Python
literals, forget to quote keys, or stop mid-object when they run out of tokens. `parse_lenient`
finds the first JSON object in the text and repairs those defects step by step, trying strict
JSON first so valid input is never altered. `coerce_number` and `coerce_time` read the values
models write for money and clock times ("$1,200", "about 20 USD", "free", "9:30 am").
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_UNQUOTED_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_\-]*)(\s*:)")
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_TIME = re.compile(r"^\s*(\d{1,2})(?:[:.h](\d{2}))?\s*([ap]\.?m\.?)?\s*$", re.IGNORECASE)
_FREE_WORDS = ("free", "no cost", "none", "gratis", "included")


class JsonRepairError(ValueError):
    """No JSON object could be read from the text."""


def strip_code_fences(text: str) -> str:
    """The inside of the first ``` fence, or the text itself when there is none."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def extract_object(text: str) -> str:
    """The first `{...}` in `text`, balanced outside strings; when the text ends before the
    object does (the model ran out of tokens), everything from the `{` to the end."""
    start = text.find("{")
    if start < 0:
        raise JsonRepairError("the reply holds no JSON object")
    depth, in_string, escaped, quote = 0, False, False, ""
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_string = False
        elif ch in "\"'":
            in_string, quote = True, ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return text[start:]


def _outside_strings(text: str, fix: Any) -> str:
    """Apply `fix` (str -> str) to the parts of `text` that are not inside double quotes."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', text)
    return "".join(p if i % 2 else fix(p) for i, p in enumerate(parts))


def _single_to_double_quotes(text: str) -> str:
    """'text' → "text" for single-quoted strings (apostrophes inside words are left alone)."""
    out: list[str] = []
    i, in_double = 0, False
    while i < len(text):
        ch = text[i]
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            in_double = not in_double
        if ch == "'" and not in_double and (i == 0 or not text[i - 1].isalnum()):
            end = i + 1
            while end < len(text) and not (text[end] == "'" and text[end - 1] != "\\"):
                end += 1
            inner = text[i + 1 : end].replace("\\'", "'").replace('"', '\\"')
            out.append(f'"{inner}"')
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def close_truncated(text: str) -> str:
    """Close an object cut off mid-way: end an open string, drop a dangling key or comma,
    and add the missing `]`/`}`."""
    stack: list[str] = []
    in_string, escaped = False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    if not stack and not in_string:
        return text
    out = text + ('"' if in_string else "")
    out = out.rstrip()
    # a key without a value, a half-written literal, or a trailing comma/colon
    out = re.sub(r',?\s*"[^"]*"\s*:\s*$', "", out)
    out = re.sub(r",?\s*\"[^\"]*\"\s*:\s*(?:t|tr|tru|f|fa|fal|fals|n|nu|nul)$", "", out)
    out = re.sub(r"[,:]\s*$", "", out)
    return out + "".join(reversed(stack))


def _attempts(text: str) -> list[str]:
    fixed = text.translate(_SMART_QUOTES)
    steps = [fixed]
    fixed = _outside_strings(fixed, lambda s: re.sub(r"//[^\n]*|/\*.*?\*/", "", s, flags=re.S))
    fixed = _single_to_double_quotes(fixed)
    fixed = _outside_strings(
        fixed,
        lambda s: re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", s)).replace(
            "None", "null"
        ),
    )
    fixed = _outside_strings(fixed, lambda s: _UNQUOTED_KEY.sub(r'\1"\2"\3', s))
    fixed = _outside_strings(fixed, lambda s: _TRAILING_COMMA.sub(r"\1", s))
    steps.append(fixed)
    closed = close_truncated(fixed)
    steps.append(_outside_strings(closed, lambda s: _TRAILING_COMMA.sub(r"\1", s)))
    return steps


def parse_lenient(text: str) -> dict[str, Any]:
    """The first JSON object in a model's reply, repaired when needed (see module doc)."""
    body = extract_object(strip_code_fences(text))
    error: json.JSONDecodeError | None = None
    for candidate in _attempts(body):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as e:
            error = e
            continue
        if isinstance(value, dict):
            return value
    raise JsonRepairError(f"the reply is not valid JSON even after repair: {error}")


def coerce_number(value: Any) -> float | None:
    """A money amount as a number: 12, "12.5", "$1,200", "20-30 EUR" (the first), "free"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if any(word in text for word in _FREE_WORDS) and not _NUMBER.search(text):
        return 0.0
    match = _NUMBER.search(text)
    if match is None:
        return None
    return float(match.group(0).replace(",", ""))


def coerce_time(value: Any) -> str | None:
    """A clock time as HH:MM: "9:30", "09.30", "9am", "2:15 PM"; None when unreadable."""
    if not isinstance(value, str):
        return None
    match = _TIME.match(value)
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    meridiem = (match.group(3) or "").lower().replace(".", "")
    if meridiem == "pm" and hour < 12:
        hour += 12
    if meridiem == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"
