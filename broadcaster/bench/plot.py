"""``bench --plot FILE``: one bench run drawn into a PNG, so a person can see what it did.

Four panels, time in seconds from the first viewer's start, with the window (publishing)
shaded and a front-end's kill (``--kill-pid``) as a red line:

- deliveries per second (frames the viewers received) and viewers connected;
- publish-to-viewer latency per second of the run: p50, p99 and max of the samplers;
- the latency distribution over the whole run;
- each front-end's resident memory, and their sum.

matplotlib is a dev extra (``pip install -e '.[dev]'``), imported only here, and drawn
with the Agg backend (no display needed). Small on purpose: 880 x 620 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broadcaster.bench.viewers import BenchError


def draw(result: dict[str, Any], path: str | Path, title: str | None = None) -> None:
    """Draw ``result`` (``run_bench``'s, or a comparison row carrying the same timeline)
    into the PNG ``path``."""
    try:
        import matplotlib
    except ImportError as exc:
        raise BenchError("--plot needs matplotlib: pip install -e '.[dev]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = result["timeline"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.75), dpi=80)
    (ax_rate, ax_lat), (ax_hist, ax_mem) = axes
    fig.suptitle(title or _title(result), fontsize=11)
    _rates(ax_rate, tl)
    _latency(ax_lat, result["latency_timeline"])
    _histogram(ax_hist, result)
    _memory(ax_mem, tl)
    for ax in (ax_rate, ax_lat, ax_mem):
        _marks(ax, tl["marks"], tl["t"][-1] if tl["t"] else 0.0)
    fig.tight_layout()
    fig.set_layout_engine(None)  # laid out: else savefig lays it out again in a dry draw
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _rates(ax: Any, tl: dict[str, Any]) -> None:
    t = tl["t"]
    # over two samples (a second): the viewer processes report every half second, out of
    # step with the samples, which one sample's difference would show as jitter
    rates = [
        (tl["deliveries"][i] - tl["deliveries"][i - 2]) / max(1e-9, t[i] - t[i - 2])
        for i in range(2, len(t))
    ]
    ax.plot(t[2:], rates, color="tab:blue", lw=1.2, label="deliveries/s")
    ax.set_ylabel("deliveries per second")
    ax.set_xlabel("s")
    ax.set_title("deliveries/s and viewers connected", fontsize=10)
    twin = ax.twinx()
    twin.plot(t, tl["connected"], color="tab:green", lw=1.2, label="viewers connected")
    if any(tl["away"]):
        twin.plot(t, tl["away"], color="tab:orange", lw=1.0, label="viewers reconnecting")
    twin.set_ylabel("viewers")
    twin.set_ylim(bottom=0)
    _legend(ax, twin)


def _latency(ax: Any, lt: dict[str, Any]) -> None:
    for key, color in (("p50", "tab:blue"), ("p99", "tab:red"), ("max", "tab:gray")):
        ax.plot(lt["t"], lt[key], color=color, lw=1.2, label=key, marker=".", ms=3)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_xlabel("s")
    ax.set_title("publish-to-viewer latency, per second", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def _histogram(ax: Any, result: dict[str, Any]) -> None:
    hist = result["latency_histogram"]
    edges, counts = hist["edges_ms"], hist["counts"]
    total = sum(counts) or 1
    ax.stairs([c / total for c in counts], edges, fill=True, color="tab:blue", alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("ms")
    ax.set_ylabel("share of samples")
    lat = result["latency_ms"]
    ax.set_title(
        f"latency distribution: p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f} ms "
        f"({result.get('latency_samples', total):,} samples)",
        fontsize=10,
    )
    for q, style in (("p50", ":"), ("p99", "--")):
        ax.axvline(lat[q], color="tab:red", ls=style, lw=1)


def _memory(ax: Any, tl: dict[str, Any]) -> None:
    t, rss = tl["t"], tl["rss_kb"]
    if rss:
        gib = 1024**2
        for pid, series in rss.items():
            ax.plot(t, [x / 1024 for x in series], lw=1, label=f"pid {pid}")
        ax.set_ylabel("MiB per front-end")
        total_rss = [sum(s[i] for s in rss.values()) / gib for i in range(len(t))]
        twin = ax.twinx()
        twin.plot(t, total_rss, color="black", lw=1.5, ls="--", label="all front-ends")
        twin.set_ylabel("GiB, all front-ends")
        twin.set_ylim(bottom=0)
        if len(rss) <= 8:
            _legend(ax, twin)
    ax.set_xlabel("s")
    ax.set_title("front-ends' resident memory", fontsize=10)


def _title(r: dict[str, Any]) -> str:
    kill = r.get("kill")
    what = f"{r['viewers']:,} viewers, {r['streams']:,} stream(s), {r['rate']:g} ev/s each"
    fes = len(r.get("timeline", {}).get("rss_kb", {})) or len(r["urls"])
    what += f", {fes} front-end process(es)"
    if kill:
        what += f", one killed at {kill['at_s']:.0f} s into the window"
    return what


def _marks(ax: Any, marks: dict[str, float], end: float) -> None:
    if "window" in marks:
        ax.axvspan(marks["window"], marks.get("published", end), color="tab:gray", alpha=0.08, lw=0)
    if "kill" in marks:
        ax.axvline(marks["kill"], color="tab:red", lw=1.2, ls="--")


def _legend(ax: Any, twin: Any) -> None:
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=8, loc="lower right")
