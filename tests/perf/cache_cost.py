"""What a chat's input costs with the prompt cache on against off, side by side in one
run: measured, not asserted.

    python -m tests.perf.cache_cost [--turns 20] [--cut-at 10]

For each way (``WORKER_PROMPT_CACHING`` false, then true) and each scenario (a chat of
``--turns`` turns; the same chat with turn ``--cut-at``'s worker killed mid-answer and
taken over): real processes on 127.0.0.1 (a Redis, a front-end, a worker on the real
``anthropic`` SDK) against the local Anthropic server, which bills every request's input
as the API does (its cache: ``tests/support/prompt_cache.py``; a read at a tenth of an
input token's price, a write at 1.25 times). The chat is driven as the AI SDK drives it:
each turn sends the history back, with a system prompt of about 1,400 tokens, questions
of about 40 and answers of about 130. Prints, per scenario and way, the model requests,
their input tokens by how they were billed, the input cost in input tokens at the plain
price, and the cost with caching over the cost without.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.cached_chat import turns
from tests.support.prompt_cache import AnthropicCache, Bill, Prices
from tests.support.stacks import anthropic_stack


@dataclass(frozen=True)
class Run:
    scenario: str
    caching: bool
    bills: list[Bill]

    @property
    def cost(self) -> float:
        return sum(Prices().cost(b) for b in self.bills)

    def total(self, kind: str) -> int:
        return sum(getattr(b, kind) for b in self.bills)


def run(base: Path, caching: bool, count: int, cut_at: int) -> Run:
    """One chat of ``count`` turns (turn ``cut_at`` taken over, if any), as billed."""
    worker = {"WORKER_PROMPT_CACHING": str(caching).lower(), "WORKER_LEASE_SECONDS": "1"}
    with anthropic_stack(base, worker) as stack:
        stack.model.cache = AnthropicCache()
        turns(stack, "bench-" + secrets.token_hex(4), count, cut_at=cut_at)
        bills = [e.bill for e in stack.model.exchanges if e.bill is not None]
    return Run("takeover" if cut_at else "chat", caching, bills)


def measure(base: Path, count: int, cut_at: int) -> list[Run]:
    """Both scenarios (a chat of ``count`` turns, and with turn ``cut_at`` taken over),
    each with the cache off and on, in folders of ``base``."""
    ways = [(cut, on) for cut in (0, cut_at) for on in (False, True)]
    return [run(base / f"run{n}", on, count, cut) for n, (cut, on) in enumerate(ways)]


def table(runs: list[Run]) -> str:
    rows = [
        "| scenario | caching | requests | input tokens | read | written | uncached "
        "| input cost | on / off |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    off = {r.scenario: r.cost for r in runs if not r.caching}
    for r in runs:
        ratio = f"{r.cost / off[r.scenario]:.3f}" if r.caching and off.get(r.scenario) else ""
        rows.append(
            f"| {r.scenario} | {'on' if r.caching else 'off'} | {len(r.bills)} "
            f"| {r.total('total'):,} | {r.total('cache_read'):,} | {r.total('cache_write'):,} "
            f"| {r.total('plain'):,} | {r.cost:,.0f} | {ratio} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--cut-at", type=int, default=10, help="the turn taken over")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cache-cost-") as tmp:
        runs = measure(Path(tmp), args.turns, args.cut_at)
    print(f"A chat of {args.turns} turns; the takeover at turn {args.cut_at}.")
    print("Input cost in input tokens at the plain price (a read 0.1, a write 1.25).\n")
    print(table(runs))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
