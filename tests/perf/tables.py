"""The comparison's report: a table per scenario and round, the ratios of the project to
each other target, what crosses scenarios (``cross``), the median over rounds
(``summary``), and the runs that have a timeline drawn into PNGs (``plot``)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from broadcaster.bench.report import kill_rows
from tests.perf.scenarios import FLEET_NAMES, FRONTEND_SCENARIOS, Scenario
from tests.perf.targets import BEFORE_DS, DS, MUX


def _f(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _speed(row: dict[str, Any], measure: str) -> float:
    """Events/s delivered: live, or to the late joiners (a joiner that lost events, e.g.
    answered 204, delivered only what it got)."""
    if measure == "replay":
        rp = row["replay"]
        got = rp["events"] * rp["joiners"] - rp["lost"]
        return float(got / rp["seconds"]) if rp["seconds"] > 0 else math.nan
    return float(row["delivered_events_per_s"])


def ratios(rows: list[dict[str, Any]], measure: str = "live") -> dict[str, float]:
    """The project's events/s divided by each other target's."""
    by = {r["target"]: r for r in rows if "error" not in r}
    if "project" not in by:
        return {}
    mine = _speed(by["project"], measure)
    return {
        t: mine / _speed(r, measure)
        for t, r in by.items()
        if t != "project" and _speed(r, measure) > 0
    }


def table(s: Scenario, rows: list[dict[str, Any]]) -> str:
    if s.custom is not None:
        return "\n".join([f"== {s.name}: {s.about}", *s.custom.table(rows)])
    head = (
        f"{'target':11} {'deliv/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'pub99':>6} "
        f"{'srvCPU/100k':>11} {'redisCPU':>8} {'redis us/ev':>11} {'busy us/ev':>10} "
        f"{'subs':>4} {'benchCPU/100k':>13} "
        f"{'KiB/conn':>8} {'cmd/ev/fe':>9} {'lost':>5} {'behind':>6}  replay / joiners"
    )
    lines = [f"== {s.name}: {s.about}", head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['target']:11} ERROR {r['error']}")
            continue
        lines.append(
            f"{r['target']:11} {_f(r['delivered_events_per_s'], 0):>10} {_f(r['p50_ms']):>7} "
            f"{_f(r['p99_ms']):>7} {_f(r['max_ms']):>7} {_f(r['publish_p99_ms']):>6} "
            f"{_f(r['server_cpu_s_per_100k'], 3):>11} "
            f"{_f(r['redis_cpu_s_per_100k'], 3):>8} "
            f"{_f(r['redis_cpu_us_per_event'], 0):>11} "
            f"{_f(r['redis_busy_us_per_event'], 0):>10} "
            f"{_f(r['subscribers_per_stream']):>4} "
            f"{_f(r['bench_cpu_s_per_100k'], 3):>13} "
            f"{_f(r['server_rss_kb_per_connection']):>8} "
            f"{_f(r['fanout_redis_commands_per_event_per_frontend'], 2):>9} "
            f"{r['lost'] + r['quiet_lost']:>5} {r['behind_at_deadline']:>6}  {_extra(r)}"
        )
    lines += _ratio_lines(s, rows)
    if s.idle_commands > 0 or s.name in FLEET_NAMES:
        lines += cost_lines(rows)
    if s.by_name or s.kill:
        lines += [_fleet_line(r) for r in rows if "error" not in r]
    return "\n".join(lines)


COSTS = (
    ("connect_seconds", "all connected in", "s", 1),
    ("server_cpu_ms_per_connect", "front-end CPU per connect", "ms", 3),
    ("server_rss_kb_per_connection", "memory per connection", "KiB", 1),
    ("idle_redis_commands_per_s", "idle Redis commands per front-end", "/s", 1),
)
"""What a viewer costs around its deliveries, and what an idle front-end asks of Redis:
each target's figure beside the ceiling's of the same run (``cost_lines``)."""


def cost_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A viewer's cost, per target, and its ratio to the ceiling's (``ceiling`` or
    ``ceiling-xN``) in the same run."""
    ok = [r for r in rows if "error" not in r]
    ceiling = next((r for r in ok if r["target"].startswith("ceiling")), None)
    lines = ["viewer cost (target / ceiling):"]
    for key, label, unit, digits in COSTS:
        parts = []
        for r in ok:
            v = r.get(key)
            if v is None:
                continue
            part = f"{r['target']} {v:,.{digits}f} {unit}"
            base = ceiling.get(key) if ceiling is not None and r is not ceiling else None
            if base:
                part += f" ({v / base:.1f}x)"
            parts.append(part)
        if parts:
            lines.append(f"  {label}: " + ", ".join(parts))
    return lines


def _fleet_line(r: dict[str, Any]) -> str:
    """What the fleet scenarios are about: connecting, memory, CPU per delivery, the kill."""
    peak = r["server_rss_peak_kb"] or 0
    line = (
        f"{r['target']}: {r['viewers']:,} viewers connected in {r['connect_seconds']:.1f} s "
        f"({r['server_cpu_ms_per_connect']:.2f} ms of front-end CPU each); front-ends "
        f"{peak / 1024**2:.2f} GiB at the peak ({_f(r['server_rss_kb_per_connection'])} KiB per "
        f"connection); {_f(r['server_cpu_s_per_100k'], 3)} CPU s per 100,000 deliveries; "
        f"p50/p99 {_f(r['p50_ms'])}/{_f(r['p99_ms'])} ms; {_expected(r)}; lost {r['lost']}, "
        f"duplicated {r['duplicated']}, behind {r['behind_at_deadline']}"
    )
    if r["kill"]:
        line += "".join(f"\n  {k}: {v}" for k, v in kill_rows(r))
    return line


def _expected(r: dict[str, Any]) -> str:
    """Events delivered of those due: every viewer its stream's, the first (replayed as it
    connected) and every one published in the window."""
    due = r["viewers"] * (r["events_published"] // max(1, r["streams"]) + 1)
    return f"{r['deliveries']:,} of {due:,} events delivered"


def _extra(r: dict[str, Any]) -> str:
    rp, first = r["replay"], r["first_event_ms"]
    if rp:
        return f"{rp['joiners']}x{rp['events']} in {rp['seconds']:.2f} s, lost {rp['lost']}"
    if first:
        p50, p99, top = first["p50"], first["p99"], first["max"]
        return f"first event p50 {p50:.0f} / p99 {p99:.0f} / max {top:.0f} ms"
    return ""


P99_SCENARIOS = ("one-1000-50", "hot-alone")
"""Scenarios whose point is latency: each round and the summary give the project's p99
over each other target's."""


def p99_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The project's p99 publish-to-viewer latency over each other target's."""
    by = {r["target"]: r for r in rows if "error" not in r and r["p99_ms"] > 0}
    if "project" not in by:
        return {}
    mine = by["project"]["p99_ms"]
    return {t: mine / r["p99_ms"] for t, r in by.items() if t != "project"}


def cpu_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each other target's server CPU per delivery divided by the project's: how many
    events the project delivers per CPU second, relative to each."""
    by = {r["target"]: r for r in rows if "error" not in r and r["server_cpu_s_per_100k"]}
    if "project" not in by:
        return {}
    mine = by["project"]["server_cpu_s_per_100k"]
    return {t: r["server_cpu_s_per_100k"] / mine for t, r in by.items() if t != "project"}


def _ratio_lines(s: Scenario, rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    rat = ratios(rows, s.measure)
    if rat:
        lines.append(
            f"project / each ({s.measure} events/s): "
            + ", ".join(f"{t} {v:.2f}x" for t, v in rat.items())
        )
    p99 = p99_ratios(rows)
    if p99 and s.name in P99_SCENARIOS:
        lines.append(
            "p99 latency, project / each: " + ", ".join(f"{t} {v:.2f}x" for t, v in p99.items())
        )
    cpu = cpu_ratios(rows)
    by = {r["target"]: r for r in rows if "error" not in r}
    if cpu and s.measure == "live":
        lines.append(
            "events per server CPU second, project / each: "
            + ", ".join(f"{t} {v:.2f}x" for t, v in cpu.items())
        )
    # Each comparison is printed whenever both targets ran: a short run's CPU can read as
    # zero ticks, and a ratio of it is then unknown rather than the line missing.
    if MUX in by and "project" in by:
        mux, one = by[MUX], by["project"]
        busy = _over(mux["server_busy_cpu_s_per_100k"], one["server_busy_cpu_s_per_100k"])
        all_redis = _over(mux["redis_cpu_us_per_event"], one["redis_cpu_us_per_event"])
        lines.append(
            "dashboard / single-stream connections: front-end CPU per delivery "
            f"{busy} (less idle; all of it {_over(cpu.get(MUX), 1)}), Redis CPU per event "
            f"{_over(_busy(mux), _busy(one))} (less idle; all of it {all_redis}), "
            f"p99 {mux['p99_ms']:.1f} vs {one['p99_ms']:.1f} ms"
        )
    if DS in by and "project" in by:
        ds, sse = by[DS], by["project"]
        lines.append(
            "Durable Streams / SSE route: deliveries per server CPU second "
            f"{_over(1, cpu.get(DS))}, deliveries/s {_over(1, rat.get(DS))}, "
            f"p50 {ds['p50_ms']:.1f} vs {sse['p50_ms']:.1f} ms, "
            f"p99 {ds['p99_ms']:.1f} vs {sse['p99_ms']:.1f} ms"
        )
        if BEFORE_DS in cpu and DS in cpu:
            lines.append(
                "Durable Streams, project-ds / before-ds: deliveries per server CPU second "
                f"{cpu[BEFORE_DS] / cpu[DS]:.2f}x"
            )
    return lines


def _over(a: float | None, b: float | None) -> str:
    """``a / b`` as a ratio, or why there is none (too little measured to tell)."""
    if a is None or not b or not math.isfinite(a / b) or a / b <= 0:
        return "unknown (too little measured)"
    return f"{a / b:.2f}x"


def _busy(row: dict[str, Any]) -> float:
    """Redis's CPU per event less its idle CPU, floored at a microsecond (noise)."""
    return max(1.0, float(row["redis_busy_us_per_event"]))


def fleet_cross(rnd: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each fleet scenario at 100,000 viewers beside the same at 10,000: ratios."""
    lines = []
    for name, rows in rnd.items():
        if not name.startswith("100k-"):
            continue
        small = {r["target"]: r for r in rnd.get("10k-" + name[5:], []) if "error" not in r}
        for r in rows:
            base = small.get(r["target"])
            if "error" in r or base is None:
                continue

            def ratio(key: str, r: dict[str, Any] = r, base: dict[str, Any] = base) -> str:
                a, b = r[key], base[key]
                return f"{a / b:.2f}x" if a and b else "n/a"

            lines.append(
                f"{name} / 10k-{name[5:]}, {r['target']}: connect time {ratio('connect_seconds')},"
                f" KiB per connection {ratio('server_rss_kb_per_connection')}, CPU per delivery "
                f"{ratio('server_cpu_s_per_100k')}, p99 {ratio('p99_ms')} "
                f"({_f(r['p99_ms'])} vs {_f(base['p99_ms'])} ms)"
            )
    return lines


def cross(rnd: dict[str, list[dict[str, Any]]]) -> str:
    """What watching 10,000 other streams does to one stream's events, per target: the
    ratios of hot-among-10000 (and join-10000) to hot-alone; and Redis's cost per event
    over 1, 2 and 4 front-ends. Redis CPU here is less its idle CPU (``busy``): at 50
    events/s its cron and client bookkeeping would otherwise be most of each event's."""
    lines = fleet_cross(rnd)
    alone = {r["target"]: r for r in rnd.get("hot-alone", []) if "error" not in r}
    for name in ("hot-among-10000", "join-10000"):
        for r in rnd.get(name, []):
            base = alone.get(r["target"])
            if "error" in r or base is None:
                continue
            lines.append(
                f"{name} / hot-alone, {r['target']}: front-end CPU per delivery "
                f"{r['server_cpu_s_per_100k'] / base['server_cpu_s_per_100k']:.2f}x, "
                f"Redis CPU per event "
                f"{r['redis_busy_us_per_event'] / base['redis_busy_us_per_event']:.2f}x "
                f"({r['redis_busy_us_per_event']:.0f} vs {base['redis_busy_us_per_event']:.0f} us;"
                f" with idle {r['redis_cpu_us_per_event'] / base['redis_cpu_us_per_event']:.2f}x),"
                " "
                f"p99 {r['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms "
                f"({r['p99_ms'] / base['p99_ms']:.2f}x)"
            )
    for name in FRONTEND_SCENARIOS:
        fes = [r for r in rnd.get(name, []) if "error" not in r]
        if not fes:
            continue
        one = fes[0]["redis_busy_us_per_event"]
        lines.append(
            f"{name}: Redis CPU per event (less idle) by front-ends: "
            + ", ".join(
                f"{r['frontends']}: {r['redis_busy_us_per_event']:.1f} us "
                f"({r['redis_busy_us_per_event'] / one:.2f}x; "
                f"{r['subscribers_per_stream']:.2f} subscribers per stream, "
                f"{r['redis_writes_per_event']:.2f} writes and "
                f"{r['redis_bytes_out_per_event']:.0f} bytes out per event, "
                f"{r['fanout_redis_commands_per_event_per_frontend']:.3f} cmd/ev/fe)"
                for r in fes
            )
        )
    return "\n".join(lines)


def summary(rounds: list[dict[str, list[dict[str, Any]]]], chosen: list[Scenario]) -> str:
    lines = ["== median ratios project / each (events/s) over rounds"]
    for s in chosen:
        name = s.name
        if s.custom is not None:
            lines += [f"{name}:", *s.custom.summary([rnd.get(name, []) for rnd in rounds])]
            continue
        ds = [cpu_ratios(rnd.get(name, [])).get(DS) for rnd in rounds]
        if DS in s.targets and all(ds):
            ds_cpu = [1 / v for v in ds if v is not None]
            lines.append(
                f"{name:16} Durable Streams / SSE route, deliveries per server CPU second: "
                f"{statistics.median(ds_cpu):.2f}x ({', '.join(f'{x:.2f}' for x in ds_cpu)})"
            )
        old = [cpu_ratios(rnd.get(name, [])) for rnd in rounds]
        if all(DS in c and BEFORE_DS in c for c in old):
            vs = [c[BEFORE_DS] / c[DS] for c in old]
            lines.append(
                f"{name:16} Durable Streams, project-ds / before-ds, deliveries per server CPU "
                f"second: {statistics.median(vs):.2f}x ({', '.join(f'{x:.2f}' for x in vs)})"
            )
        if name in P99_SCENARIOS:
            lat: dict[str, list[float]] = {}
            for rnd in rounds:
                for t, v in p99_ratios(rnd.get(name, [])).items():
                    lat.setdefault(t, []).append(v)
            lines.append(
                f"{name:16} p99, project / each: "
                + ", ".join(
                    f"{t} {statistics.median(v):.2f}x ({', '.join(f'{x:.2f}' for x in v)})"
                    for t, v in lat.items()
                )
            )
        per_target: dict[str, list[float]] = {}
        for rnd in rounds:
            for t, v in ratios(rnd.get(name, []), s.measure).items():
                per_target.setdefault(t, []).append(v)
        if per_target:
            lines.append(f"{name:16} " + _medians(per_target, 2))
        if s.idle_commands > 0 or name in FLEET_NAMES:
            lines += _cost_summary(name, [rnd.get(name, []) for rnd in rounds])
    return "\n".join(lines)


def _cost_summary(name: str, rounds: list[list[dict[str, Any]]]) -> list[str]:
    """The median over rounds of each target's viewer cost over the ceiling's."""
    lines = []
    for key, label, _, _ in COSTS:
        per: dict[str, list[float]] = {}
        for rows in rounds:
            ok = [r for r in rows if "error" not in r]
            ceiling = next((r for r in ok if r["target"].startswith("ceiling")), None)
            base = ceiling.get(key) if ceiling is not None else None
            for r in ok:
                if r is not ceiling and base and r.get(key) is not None:
                    per.setdefault(r["target"], []).append(r[key] / base)
        if per:
            lines.append(f"{name:16} {label} / ceiling: " + _medians(per, 1))
    return lines


def _medians(per_target: dict[str, list[float]], digits: int) -> str:
    """Each target's median ratio over the rounds, and the rounds' own."""
    return ", ".join(
        f"{t} {statistics.median(v):.{digits}f}x ({', '.join(f'{x:.{digits}f}' for x in v)})"
        for t, v in per_target.items()
    )


def plot(rounds: list[dict[str, list[dict[str, Any]]]], path: Path) -> list[Path]:
    """Each row that has a timeline (the fleet and kill scenarios) drawn into a PNG."""
    from broadcaster.bench.plot import draw

    rows = [
        (i, name, r)
        for i, rnd in enumerate(rounds)
        for name, rs in rnd.items()
        for r in rs
        if "timeline" in r and (name in FLEET_NAMES or name == "smoke-kill")
    ]
    out = []
    for i, name, r in rows:
        target = path
        if len(rows) > 1:
            suffix = f"-r{i + 1}" if len(rounds) > 1 else ""
            target = path.with_name(f"{path.stem}-{name}-{r['target']}{suffix}{path.suffix}")
        draw(r, target)
        out.append(target)
    return out
