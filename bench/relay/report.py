"""Turn a relay run's summary JSON into the targets table, the chart and the markdown section.

Only the text between ``<!-- relay:begin -->`` and ``<!-- relay:end -->`` of
``docs/benchmarks.md`` is written; the rest of the file is left as it is. Re-render the last run
without running it again: ``.venv/bin/python -m bench.relay.report``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"
CHART = REPO / "docs" / "img" / "relay-p99-gap.png"
RESULTS = REPO / "bench" / "results" / "relay-latest.json"
BEGIN = "<!-- relay:begin -->"
END = "<!-- relay:end -->"
GAP_TARGET_MS = 40.0
LABELS = {
    "tokenrelay": "tokenrelay",
    "naive": "naive FastAPI StreamingResponse",
    "sse_starlette": "sse-starlette",
    "floor": "floor (bare asyncio)",
}


# -- targets


def knee(rows: list[dict[str, Any]], server: str) -> tuple[int, bool]:
    """(largest level of the passing prefix, whether the ramp ended while still passing)."""
    levels = sorted((r for r in rows if r["server"] == server), key=lambda r: r["concurrency"])
    best = 0
    for r in levels:
        p99 = r["gap_p99_ms"]
        if p99 is None or p99 > GAP_TARGET_MS or r["errors"] > 0:
            return best, False
        best = r["concurrency"]
    return best, bool(levels)


def _row(rows: list[dict[str, Any]], server: str, **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if r["server"] == server and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _best_duration(row: dict[str, Any] | None) -> float | None:
    """A level's p99 stream duration: the better run's where it was run twice."""
    if row is None:
        return None
    runs = [d for d in row.get("attempts_duration_p99_s") or [] if d]
    return min(runs) if runs else row["duration_p99_s"]


def _target(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
    return {"target": name, "status": status, "detail": detail}


def evaluate(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    paced = res.get("paced", [])
    servers = {r["server"] for r in paced}
    has_tr = "tokenrelay" in servers

    def knee_text(s: str) -> str:
        k, open_ended = knee(paced, s)
        return f"{k}{'+' if open_ended else ''}"

    def past_knee(*names: str) -> str:
        """How many streams each server had delivering at once at the level it failed: one
        that admits streams more slowly than the ramp opens them has fewer (findings 24, 35)."""
        parts = []
        for s in names:
            k, open_ended = knee(paced, s)
            beyond = sorted(
                (r for r in paced if r["server"] == s and r["concurrency"] > k),
                key=lambda r: r["concurrency"],
            )
            if beyond and not open_ended and beyond[0].get("peak_delivering") is not None:
                r = beyond[0]
                parts.append(f"{s} {r['peak_delivering']:,} of {r['concurrency']:,}")
        return f"; delivering at once where each failed: {', '.join(parts)}" if parts else ""

    if has_tr and "naive" in servers:
        tr, naive = knee(paced, "tokenrelay")[0], knee(paced, "naive")[0]
        out.append(
            _target(
                "paced: knee (largest concurrency with p99 gap <= 40 ms) >= naive's",
                None if naive == 0 else tr >= naive,
                f"tokenrelay {knee_text('tokenrelay')} vs naive {knee_text('naive')}"
                + (f" (ratio {tr / naive:.2f})" if naive else "")
                + past_knee("tokenrelay", "naive"),
            )
        )
    else:
        out.append(_target("paced: knee >= naive's", None, "tokenrelay or naive not measured"))
    if has_tr and "sse_starlette" in servers:
        tr, sse = knee(paced, "tokenrelay")[0], knee(paced, "sse_starlette")[0]
        out.append(
            _target(
                "paced: knee >= 2x sse-starlette's",
                None if sse == 0 else tr >= 2 * sse,
                f"tokenrelay {knee_text('tokenrelay')} vs sse-starlette "
                f"{knee_text('sse_starlette')}"
                + (f" (ratio {tr / sse:.2f})" if sse else "")
                + past_knee("tokenrelay", "sse_starlette"),
            )
        )
    else:
        out.append(_target("paced: knee >= 2x sse-starlette's", None, "not measured"))
    tr_1k, naive_1k = (
        _row(paced, "tokenrelay", concurrency=1000),
        _row(paced, "naive", concurrency=1000),
    )
    tr_dur, naive_dur = _best_duration(tr_1k), _best_duration(naive_1k)
    if tr_1k and naive_1k and tr_dur and naive_dur:
        ratio = tr_dur / naive_dur
        runs = len(tr_1k.get("attempts_duration_p99_s") or [0])
        out.append(
            _target(
                "paced: p99 stream duration at 1,000 streams <= 1.1x naive's",
                ratio <= 1.1 and tr_1k["errors"] == 0,
                f"{tr_dur:.2f} s vs {naive_dur:.2f} s (ratio {ratio:.2f}"
                + (f", the better of {runs} runs each" if runs > 1 else "")
                + f"; errors {tr_1k['errors']} vs {naive_1k['errors']})",
            )
        )
    else:
        out.append(_target("paced: p99 duration at 1,000 <= 1.1x naive's", None, "not measured"))

    best = {r["server"]: r for r in res.get("unpaced_best", [])}
    tr_u = best.get("tokenrelay")
    for other, factor, name in (
        ("naive", 1.0, "unpaced: events/s >= naive's"),
        ("floor", 0.6, "unpaced: events/s >= 0.6x floor's"),
    ):
        o = best.get(other)
        if tr_u and o and o["events_per_s"]:
            ratio = tr_u["events_per_s"] / o["events_per_s"]
            out.append(
                _target(
                    name,
                    ratio >= factor,
                    f"{tr_u['events_per_s']:,} vs {o['events_per_s']:,} events/s "
                    f"(ratio {ratio:.2f})",
                )
            )
        else:
            out.append(_target(name, None, "not measured"))

    idle = {r["server"]: r for r in res.get("idle", [])}
    if "tokenrelay" in idle:
        kb = idle["tokenrelay"]["kb_per_stream"]
        out.append(_target("memory per open idle stream <= 20 KB", kb <= 20, f"{kb:.1f} KB"))
    else:
        out.append(_target("memory per open idle stream <= 20 KB", None, "not measured"))

    ttft = {r["server"]: r for r in res.get("ttft", [])}
    if "tokenrelay" in ttft and "floor" in ttft:
        added = ttft["tokenrelay"]["p50_ms"] - ttft["floor"]["p50_ms"]
        out.append(
            _target(
                "TTFT added by tokenrelay, p50 at concurrency 1 <= 3 ms",
                added <= 3.0,
                f"{added:.2f} ms (tokenrelay {ttft['tokenrelay']['p50_ms']:.2f} ms - floor "
                f"{ttft['floor']['p50_ms']:.2f} ms)",
            )
        )
    else:
        out.append(_target("TTFT added p50 <= 3 ms", None, "not measured"))

    cancel = res.get("cancel") or {}
    if cancel.get("status") == "ok" and cancel.get("observed"):
        p99 = cancel["p99_le_ms"]
        out.append(
            _target(
                "disconnect -> provider cancelled p99 <= 50 ms",
                p99 is not None and p99 <= 50,
                f"p99 <= {p99:g} ms (histogram bucket bound), "
                f"{cancel['observed']:.0f} cancellations",
            )
        )
    else:
        out.append(
            _target(
                "disconnect -> provider cancelled p99 <= 50 ms",
                None,
                str(cancel.get("status", "not measured"))
                if cancel.get("status") != "ok"
                else "no cancellation observed in the histogram",
            )
        )
    return out


# -- chart


def chart(res: dict[str, Any], path: Path = CHART) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for server in ("tokenrelay", "naive", "sse_starlette", "floor"):
        rows = sorted(
            (r for r in res.get("paced", []) if r["server"] == server),
            key=lambda r: r["concurrency"],
        )
        pts = [(r["concurrency"], r["gap_p99_ms"]) for r in rows if r["gap_p99_ms"] is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=LABELS[server])
    ax.axhline(GAP_TARGET_MS, color="red", linestyle="--", linewidth=1, label="40 ms target")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent streams (100 tokens at 20 ms each)")
    ax.set_ylabel("p99 inter-token gap (ms, log)")
    ax.set_title(f"p99 inter-token gap vs concurrency ({res['meta']['nproc']} cores, one run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- markdown


def _peak(row: dict[str, Any]) -> str:
    peak = row.get("peak_delivering")
    return f"{peak:,}" if peak is not None else "–"


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [
        "## Relay: tokenrelay against hand-written SSE servers",
        "",
        f"Run on {m['date']}, commit `{m['commit']}`, {m['nproc']} cores ({m['cpu']}), "
        f"Python {m['python']}, event loop {m['loop']}, HTTP parser {m['http']} (the same for "
        f"every server). Load average at the start: {' '.join(m['loadavg_start'])}. "
        f"Whole run: {res.get('elapsed_s', 0):.0f} s.",
        "",
        "```",
        m["command"],
        "```",
        "",
        "All four servers ran side by side in this one run, each as one process (one uvicorn "
        "worker, no access log); the load generator (`bench/relay/loadgen.py`, raw asyncio "
        "sockets) ran on the same 2-core machine, which other work shares, so compare ratios "
        "within the run, not absolute numbers across runs. How each scenario works: "
        "`bench/README.md`.",
        "",
        "### Targets",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    for t in res.get("targets", []):
        lines.append(f"| {t['target']} | **{t['status']}** | {t['detail']} |")
    lines += [
        "",
        f"### Paced streams: 100 tokens at 20 ms, ramp over {res['config']['ramp']:g} s",
        "",
        "![p99 inter-token gap against concurrency](img/relay-p99-gap.png)",
        "",
        "| server | streams | delivering at once | gap p50 ms | gap p99 ms | gap max ms "
        "| TTFT p99 ms | duration p99 s | errors | server CPU µs/event | server CPU util "
        "| load gen CPU µs/event | RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"tokenrelay": 0, "naive": 1, "sse_starlette": 2, "floor": 3}
    for r in sorted(
        res.get("paced", []), key=lambda r: (order.get(r["server"], 9), r["concurrency"])
    ):
        dur = _f(r["duration_p99_s"], 2)
        if r.get("attempts_duration_p99_s"):
            dur = f"{dur} (runs: {' / '.join(_f(a, 2) for a in r['attempts_duration_p99_s'])})"
        attempts = r.get("attempts_gap_p99_ms")
        second = f" (runs: {' / '.join(_f(a) for a in attempts)})" if attempts else ""
        lines.append(
            f"| {r['server']} | {r['concurrency']:,} | {_peak(r)} | {_f(r['gap_p50_ms'])} "
            f"| {_f(r['gap_p99_ms'])}{second} "
            f"| {_f(r['gap_max_ms'])} | {_f(r['ttft_p99_ms'])} | {dur} | {r['errors']} "
            f"| {_f(r['server_cpu_us_per_event'])} | {_f(r['server_cpu_util'], 2)} "
            f"| {_f(r['loadgen_cpu_us_per_event'])} | {_f(r['rss_mb'])} |"
        )
    knees = ", ".join(
        f"{s} {knee(res.get('paced', []), s)[0]}"
        for s in order
        if any(r["server"] == s for r in res.get("paced", []))
    )
    lines += [
        "",
        f"Knee (largest level whose p99 gap ≤ 40 ms with no error, and all below it): {knees}.",
        "*Delivering at once* is the most streams that were between their first token and "
        "their end at one moment: a server that sets streams up more slowly than the ramp "
        "opens them never has the whole level delivering, and its gaps are those of fewer "
        "streams.",
        "A level that misses the gap target is run once more for that server and the better "
        "run counts (both p99s are shown): on this shared machine a stall elsewhere can fail "
        "one level by itself. Each server gets that second chance until a failure repeats. "
        "Every server runs the 1,000-stream level twice: the duration target compares each "
        "server's better p99 duration (both are shown).",
        "",
    ]

    lines += [
        "### Unpaced throughput (100 tokens, no delay, closed loop)",
        "",
        "| server | round | concurrency | token events/s | server CPU µs/event | server CPU util "
        "| load gen CPU µs/event | machine busy cores | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(res.get("unpaced", []), key=lambda r: (order.get(r["server"], 9), r["round"])):
        lines.append(
            f"| {r['server']} | {r['round']} | {r['concurrency']} | {r['events_per_s']:,} "
            f"| {_f(r['server_cpu_us_per_event'])} | {_f(r['server_cpu_util'], 2)} "
            f"| {_f(r['loadgen_cpu_us_per_event'])} | {_f(r['machine_busy_cores'], 2)} "
            f"| {r['errors']} |"
        )
    lines += ["", "The target uses each server's best round.", ""]

    lines += [
        "### Memory per open idle stream",
        "",
        "| server | streams open | RSS before MB | RSS after MB | KB per stream |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in sorted(res.get("idle", []), key=lambda r: order.get(r["server"], 9)):
        lines.append(
            f"| {r['server']} | {r['opened']:,} | {r['rss_before_mb']:.1f} "
            f"| {r['rss_after_mb']:.1f} | {r['kb_per_stream']:.1f} |"
        )
    lines += [
        "",
        "### Time to first token at concurrency 1 (one-token streams, sequential)",
        "",
        "| server | requests | p50 ms | p90 ms | p99 ms | p50 per round ms |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(res.get("ttft", []), key=lambda r: order.get(r["server"], 9)):
        rounds = ", ".join(_f(v, 2) for v in r["round_p50_ms"])
        lines.append(
            f"| {r['server']} | {r['requests']} | {_f(r['p50_ms'], 2)} | {_f(r['p90_ms'], 2)} "
            f"| {_f(r['p99_ms'], 2)} | {rounds} |"
        )
    cancel = res.get("cancel") or {}
    lines += ["", "### Disconnect → provider cancelled (tokenrelay)", ""]
    if cancel.get("status") == "ok":
        buckets = ", ".join(
            f"≤{float(k) * 1000:g} ms: {v:.0f}" for k, v in cancel["buckets"].items() if v
        )
        lines.append(
            f"{cancel['disconnected']} streams closed by the client after 10 tokens; "
            f"`tokenrelay_cancel_latency_seconds` observed {cancel['observed']:.0f}: p50 ≤ "
            f"{_f(cancel['p50_le_ms'], 1)} ms, p99 ≤ {_f(cancel['p99_le_ms'], 1)} ms "
            f"(cumulative buckets: {buckets})."
        )
    else:
        lines.append(f"Not measured: {cancel.get('status', 'scenario not run')}.")
    servers = res.get("servers", {})
    if servers:
        lines += ["", "### Servers as started", ""]
        for name, s in servers.items():
            libs = ", ".join(s["libs"]) or "none of uvloop/httptools/orjson"
            lines.append(f"- {name}: `{' '.join(s['argv'])}` (loaded: {libs})")
        lines += [
            "",
            "Every server but the floor runs uvicorn's HTTP protocol on uvloop. `tokenrelay "
            "serve` accepts connections with its own listener (up to 32 waiting connections "
            "at each wake-up); the uvicorn baselines accept with uvloop's, one per loop turn "
            "(findings items 35 and 41 below).",
        ]
    findings = Path(__file__).with_name("findings.md")
    if findings.exists():
        lines += ["", findings.read_text().rstrip()]
    notes = res.get("notes") or []
    analysis = res.get("analysis") or []
    if notes or analysis:
        lines += ["", "### Notes", ""]
        lines += [f"- {n}" for n in [*notes, *analysis]]
    return "\n".join(lines) + "\n"


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace what is between the relay markers, creating the file or markers if missing."""
    block = f"{BEGIN}\n{text}{END}"
    if not doc.exists():
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(f"# Benchmarks\n\n{block}\n")
        return
    current = doc.read_text()
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        sep = "" if current.endswith("\n\n") else ("\n" if current.endswith("\n") else "\n\n")
        doc.write_text(f"{current}{sep}{block}\n")
        return
    doc.write_text(current[:start] + block + current[end + len(END) :])


def write(res: dict[str, Any]) -> None:
    if "targets" not in res:
        res["targets"] = evaluate(res)
    chart(res)
    write_section(markdown(res))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else RESULTS
    res = json.loads(path.read_text())
    res["targets"] = evaluate(res)
    write(res)
    print(f"wrote {DOC} and {CHART} from {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
