"""Small pure helpers: percentiles, machine CPU, Prometheus histogram parsing."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path


def pct(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100); None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def machine_jiffies() -> tuple[int, int]:
    """(total, idle+iowait) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_cores(before: tuple[int, int], after: tuple[int, int], ncpu: int) -> float | None:
    total = after[0] - before[0]
    if total <= 0:
        return None
    return round((total - (after[1] - before[1])) / total * ncpu, 2)


_BUCKET = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LE = re.compile(r'le="([^"]+)"')


def histogram(text: str, name: str) -> dict[float, float] | None:
    """Cumulative bucket counts of a Prometheus histogram, summed over its other labels."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m is None or m.group("name") != name:
            continue
        le = _LE.search(m.group("labels"))
        if le is None:
            continue
        bound = math.inf if le.group(1) in ("+Inf", "Inf") else float(le.group(1))
        buckets[bound] = buckets.get(bound, 0.0) + float(m.group("value"))
    return buckets or None


def histogram_diff(
    after: dict[float, float], before: dict[float, float] | None
) -> dict[float, float]:
    before = before or {}
    return {le: after[le] - before.get(le, 0.0) for le in sorted(after)}


def histogram_quantile(buckets: dict[float, float], q: float) -> tuple[float | None, float]:
    """(upper bound of the bucket holding quantile q, count). The bound is conservative."""
    items = sorted(buckets.items())
    count = items[-1][1] if items else 0.0
    if count <= 0:
        return None, 0.0
    rank = q * count
    for bound, cum in items:
        if cum >= rank:
            return bound, count
    return math.inf, count
