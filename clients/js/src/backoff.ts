// How long to wait before the next try: exponential with full jitter, so that the
// viewers of a front-end that went away come back spread out, never in step.

/** Reconnection delays: the first `initialMs` (or the server's `retry:`), doubling to `maxMs`. */
export interface BackoffOptions {
  /** The first delay's ceiling, in milliseconds (1000 unless given). */
  initialMs?: number;
  /** The largest delay, in milliseconds (30000 unless given). */
  maxMs?: number;
}

export class Backoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}, random: () => number = Math.random) {
    this.initialMs = Math.max(1, options.initialMs ?? 1000);
    this.maxMs = Math.max(this.initialMs, options.maxMs ?? 30_000);
    this.random = random;
  }

  /** The next delay: uniform in [0, min(max, base * 2^failures)], where `base` may be the
   * server's own `retry:`; a `floorMs` (Retry-After) is never cut. */
  next(baseMs?: number, floorMs = 0): number {
    const base = Math.max(1, baseMs ?? this.initialMs);
    const ceiling = Math.min(this.maxMs, base * 2 ** Math.min(this.failures, 30));
    this.failures += 1;
    return Math.max(floorMs, Math.round(this.random() * ceiling));
  }

  /** After progress (an event received), the next failure starts over from the first delay. */
  reset(): void {
    this.failures = 0;
  }

  get attempts(): number {
    return this.failures;
  }
}
