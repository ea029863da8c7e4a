"""Draw the dashboard's panels (dashboard.json) from a Prometheus's data into one PNG:
each panel's queries asked over a time range (``/api/v1/query_range``), as Grafana would
ask them, drawn with matplotlib. Grafana need not run: this is how docs/observability.png
is made (docs/observability.md says how to make it again), and how a dashboard can be
looked at where only Prometheus runs.

    python deploy/observability/render.py --prometheus http://127.0.0.1:9090 \\
        --minutes 15 --out dashboard.png

Prints each panel that had no data, and exits 1 if any had none.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

DASHBOARD = Path(__file__).resolve().parent / "dashboard.json"
UNITS = {"s": "seconds", "ops": "per second", "percentunit": "share of 1", "short": ""}
COLUMNS = 3


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format filled from a series' labels."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def series(
    client: httpx.Client, prometheus: str, expr: str, span: tuple[float, float, float]
) -> list[tuple[dict[str, str], list[float], list[float]]]:
    """The query's series over the range: (labels, times, values); raises on an error."""
    r = client.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": span[0], "end": span[1], "step": span[2]},
    )
    body: dict[str, Any] = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', r.text)}")
    out = []
    for s in body["data"]["result"]:
        times = [float(t) for t, _ in s["values"]]
        values = [float(v) for _, v in s["values"]]
        out.append((s["metric"], times, values))
    return out


def render(
    prometheus: str,
    out: Path,
    start: float,
    end: float,
    *,
    step: float | None = None,
    dashboard: Path = DASHBOARD,
) -> list[str]:
    """Draw every panel into ``out``; the titles of the panels that had no data."""
    board = json.loads(dashboard.read_text())
    panels = board["panels"]
    step = step or max(1.0, (end - start) / 120)
    rows = math.ceil(len(panels) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(COLUMNS * 4.6, rows * 2.5), squeeze=False)
    empty = []
    with httpx.Client(timeout=30) as client:
        for ax, panel in zip(axes.flat, panels, strict=False):
            drawn = 0
            for target in panel["targets"]:
                for labels, times, values in series(
                    client, prometheus, target["expr"], (start, end, step)
                ):
                    minutes = [(t - end) / 60 for t in times]
                    ax.plot(
                        minutes, values, linewidth=1, label=legend(target["legendFormat"], labels)
                    )
                    drawn += any(not math.isnan(v) for v in values)
            if not drawn:
                empty.append(panel["title"])
            ax.set_title(panel["title"], fontsize=8)
            ax.set_ylabel(
                UNITS.get(panel["fieldConfig"]["defaults"].get("unit", ""), ""), fontsize=7
            )
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
            ax.set_xlim((start - end) / 60, 0)
            if drawn:
                ax.legend(fontsize=5, loc="upper left", frameon=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("minutes before the end", fontsize=7)
    fig.suptitle(
        f"{board['title']} (rendered from Prometheus; Grafana shows the same queries)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # room for the title
    # tight_layout leaves a placeholder layout engine, for which savefig lays every text
    # out once more in a draw of its own before the one it saves: none is needed.
    fig.set_layout_engine(None)
    fig.savefig(out, dpi=60)
    plt.close(fig)
    return empty


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15.0, help="the range drawn, ending now")
    parser.add_argument("--end", type=float, help="the range's end (Unix time; default: now)")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args()
    end = args.end or time.time()
    empty = render(args.prometheus, args.out, end - args.minutes * 60, end)
    for title in empty:
        print(f"no data: {title}")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
