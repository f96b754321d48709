"""The plan as readable text in the user's language, while the model still writes its JSON.

The model drafts JSON (the planner validates it, and the local model's grammar needs it);
the user reads lines ("1일차 · 2026-05-01: 궁궐 산책", "- 09:00 경복궁: … (15,000원)").
`DraftText` is fed the model's pieces as they come and returns the text to show for them:
after each closed `}` the draft so far, its open arrays and objects closed, is parsed, and
every title, day and activity it completes is said once, in order. The text only grows,
so it streams as tokens; what is said at the end (`finish`) comes from the whole draft.
Pure: no I/O, the language given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.i18n import localize, tr
from tokenrelay.planner.repair import parse_lenient

_CLOSERS = {"{": "}", "[": "]"}
_SYMBOLS = {"KRW": "원", "USD": "$", "EUR": "€", "JPY": "¥", "GBP": "£"}


def format_money(amount: float, currency: str) -> str:
    """12000 KRW → 12,000원; 12.5 USD → $12.50; 12 XYZ → 12 XYZ."""
    whole = float(amount).is_integer() or currency in ("KRW", "JPY")
    number = f"{amount:,.0f}" if whole else f"{amount:,.2f}"
    symbol = _SYMBOLS.get(currency)
    if symbol is None:
        return f"{number} {currency}"
    return f"{number}{symbol}" if currency == "KRW" else f"{symbol}{number}"


@dataclass
class _Scan:
    """Where the JSON stands: open brackets outside strings, and the text up to the last
    closed object with the brackets still open there."""

    stack: list[str] = field(default_factory=list)
    in_string: bool = False
    escaped: bool = False
    started: bool = False
    last_closed: str | None = None

    def step(self, ch: str) -> bool:
        """One character; True when it closes an object."""
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
        elif ch == '"':
            self.in_string = self.started
        elif ch in _CLOSERS:
            self.started = True
            self.stack.append(_CLOSERS[ch])
        elif ch in "}]" and self.stack:
            self.stack.pop()
            return ch == "}"
        return False

    def feed(self, text: str, seen: str) -> bool:
        """Scan `text` (which follows `seen`); True when an object closed in it."""
        closed_at = -1
        for i, ch in enumerate(text):
            if self.step(ch):
                closed_at = i
        if closed_at < 0:
            return False
        # the stack as it stood right after that `}`: rescanning is cheap (a few KB)
        upto = seen + text[: closed_at + 1]
        self.last_closed = upto + "".join(reversed(_open_after(upto)))
        return True


def _open_after(text: str) -> list[str]:
    """The closers of the brackets still open at the end of `text`, innermost last."""
    scan = _Scan()
    for ch in text:
        scan.step(ch)
    return scan.stack


class DraftText:
    """The readable text of one draft, as the model writes it (see the module doc)."""

    def __init__(self, currency: str, locale: str) -> None:
        self.currency = currency
        self.locale = locale
        self._raw = ""
        self._scan = _Scan()
        self._title_said = False
        self._days_said: list[int] = []  # activities said, per day said
        self._ended = False

    def feed(self, piece: str) -> str:
        seen = self._raw
        self._raw += piece
        if not self._scan.feed(piece, seen) or self._scan.last_closed is None:
            return ""
        start = self._scan.last_closed.find("{")
        try:
            data = json.loads(self._scan.last_closed[start:]) if start >= 0 else None
        except ValueError:
            return ""
        return self._say(data) if isinstance(data, dict) else ""

    def finish(self) -> str:
        """What is left to say once the draft is complete: the rest, the total, the notes."""
        data = parse_lenient(self._raw)
        if not isinstance(data, dict):
            return ""
        text = self._say(data)
        if self._ended:
            return text
        self._ended = True
        costs = [
            a.get("estimated_cost")
            for d in data.get("days") or []
            if isinstance(d, dict)
            for a in d.get("activities") or []
            if isinstance(a, dict)
        ]
        total = sum(c for c in costs if isinstance(c, int | float))
        end = [self._t(tr("Estimated total: {cost}", cost=format_money(total, self.currency)))]
        notes = data.get("notes")
        if isinstance(notes, str) and notes.strip():
            end.append(self._t(tr("Notes: {notes}", notes=notes.strip())))
        return text + "\n" + "\n".join(end) + "\n"

    def _t(self, message: str) -> str:
        return localize(message, self.locale)

    def _say(self, data: dict[str, Any]) -> str:
        out: list[str] = []
        days = [d for d in data.get("days") or [] if isinstance(d, dict)]
        title = data.get("title")
        if not self._title_said and isinstance(title, str) and title.strip():
            if not self._days_said:  # a title written after the days stays in `complete`
                out.append(title.strip() + "\n\n")
            self._title_said = True
        for index, day in enumerate(days):
            activities = [a for a in day.get("activities") or [] if isinstance(a, dict)]
            if index >= len(self._days_said):
                if not (day.get("title") or activities):
                    break
                out.append(self._day_line(index, day))
                self._days_said.append(0)
            for activity in activities[self._days_said[index] :]:
                out.append(self._activity_line(activity))
            self._days_said[index] = max(self._days_said[index], len(activities))
        return "".join(out)

    def _day_line(self, index: int, day: dict[str, Any]) -> str:
        number = day.get("day") if isinstance(day.get("day"), int) else index + 1
        lead = "\n" if index else ""
        title = str(day.get("title") or "").strip()
        when = str(day.get("date") or "").strip()
        if title:
            line = tr("Day {day} · {date}: {title}", day=number, date=when, title=title)
        else:
            line = tr("Day {day} · {date}", day=number, date=when)
        return lead + self._t(line) + "\n"

    def _activity_line(self, activity: dict[str, Any]) -> str:
        cost = activity.get("estimated_cost")
        name = str(activity.get("name") or "").strip()
        description = str(activity.get("description") or "").strip()
        line = f"- {str(activity.get('time') or '').strip()} {name}"
        if description:
            line += f": {description}"
        if isinstance(cost, int | float):
            line += f" ({format_money(cost, self.currency)})"
        return line + "\n"
