"""`convert_units`: temperature, length, mass and speed. Pure and exact to float precision."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from tokenrelay.i18n import tr
from tokenrelay.tools.context import ToolError
from tokenrelay.tools.tool import tool

# linear units: factor to the category's base unit (metre, kilogram, metre per second)
_LINEAR: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001),
    "cm": ("length", 0.01),
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "in": ("length", 0.0254),
    "ft": ("length", 0.3048),
    "yd": ("length", 0.9144),
    "mi": ("length", 1609.344),
    "nmi": ("length", 1852.0),
    "mg": ("mass", 1e-6),
    "g": ("mass", 0.001),
    "kg": ("mass", 1.0),
    "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125),
    "lb": ("mass", 0.45359237),
    "st": ("mass", 6.35029318),
    "m/s": ("speed", 1.0),
    "km/h": ("speed", 1000.0 / 3600.0),
    "mph": ("speed", 1609.344 / 3600.0),
    "kn": ("speed", 1852.0 / 3600.0),
    "ft/s": ("speed", 0.3048),
}
_TEMPERATURE = ("C", "F", "K")

_ALIASES: dict[str, str] = {
    "c": "C",
    "°c": "C",
    "celsius": "C",
    "centigrade": "C",
    "degc": "C",
    "f": "F",
    "°f": "F",
    "fahrenheit": "F",
    "degf": "F",
    "k": "K",
    "kelvin": "K",
    "millimeter": "mm",
    "millimetre": "mm",
    "centimeter": "cm",
    "centimetre": "cm",
    "meter": "m",
    "metre": "m",
    "kilometer": "km",
    "kilometre": "km",
    "inch": "in",
    "inches": "in",
    '"': "in",
    "foot": "ft",
    "feet": "ft",
    "'": "ft",
    "yard": "yd",
    "mile": "mi",
    "nautical mile": "nmi",
    "milligram": "mg",
    "gram": "g",
    "kilogram": "kg",
    "kilo": "kg",
    "tonne": "t",
    "metric ton": "t",
    "ounce": "oz",
    "pound": "lb",
    "lbs": "lb",
    "stone": "st",
    "mps": "m/s",
    "meters per second": "m/s",
    "metres per second": "m/s",
    "kmh": "km/h",
    "kph": "km/h",
    "km/hr": "km/h",
    "kilometers per hour": "km/h",
    "kilometres per hour": "km/h",
    "miles per hour": "mph",
    "knot": "kn",
    "knots": "kn",
    "kt": "kn",
    "fps": "ft/s",
    "feet per second": "ft/s",
}


def normalize_unit(unit: str) -> str:
    """A unit as we name it ("Celsius" → "C", "miles" → "mi"); ToolError if unknown."""
    raw = " ".join(unit.strip().split())
    if raw in _LINEAR or raw in _TEMPERATURE:
        return raw
    key = raw.lower().replace("degrees ", "").replace("degree ", "")
    for candidate in (key, key.rstrip("s") if len(key) > 3 else key):
        if candidate in _ALIASES:
            return _ALIASES[candidate]
        if candidate in _LINEAR:
            return candidate
    known = ", ".join([*_TEMPERATURE, *_LINEAR])
    raise ToolError(tr("unknown unit {unit!r}; use one of: {known}", unit=unit, known=known))


def category(unit: str) -> str:
    return "temperature" if unit in _TEMPERATURE else _LINEAR[unit][0]


_CATEGORY_NAMES = {
    "temperature": tr("temperature"),
    "length": tr("length"),
    "mass": tr("mass"),
    "speed": tr("speed"),
}


def _to_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value + 273.15
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0 + 273.15
    return value


def _from_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value - 273.15
    if unit == "F":
        return (value - 273.15) * 9.0 / 5.0 + 32.0
    return value


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert between two normalised units of the same category."""
    source, target = category(from_unit), category(to_unit)
    if source != target:
        raise ToolError(
            tr(
                "cannot convert {from_unit} to {to_unit}: {from_unit} is a {source} unit"
                " and {to_unit} a {target} unit",
                from_unit=from_unit,
                to_unit=to_unit,
                source=_CATEGORY_NAMES[source],
                target=_CATEGORY_NAMES[target],
            )
        )
    if source == "temperature":
        kelvin = _to_kelvin(value, from_unit)
        if kelvin < 0:
            raise ToolError(
                tr("{value:g} {unit} is below absolute zero", value=value, unit=from_unit)
            )
        return _from_kelvin(kelvin, to_unit)
    return value * _LINEAR[from_unit][1] / _LINEAR[to_unit][1]


@tool
def convert_units(
    value: float,
    from_unit: Annotated[str, Field(min_length=1, max_length=40)],
    to_unit: Annotated[str, Field(min_length=1, max_length=40)],
) -> dict[str, Any]:
    """Convert a value between units of temperature (C, F, K), length (mm, cm, m, km, in, ft,
    yd, mi, nmi), mass (mg, g, kg, t, oz, lb, st) or speed (m/s, km/h, mph, kn, ft/s).

    Args:
        value: the number to convert
        from_unit: the unit of the value, e.g. "C", "celsius", "km", "lb", "mph"
        to_unit: the unit wanted, of the same kind
    """
    source, target = normalize_unit(from_unit), normalize_unit(to_unit)
    result = convert(value, source, target)
    return {
        "value": value,
        "from_unit": source,
        "to_unit": target,
        "result": round(result, 10),
        "category": category(source),
    }
