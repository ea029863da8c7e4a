import { describe, expect, it } from "vitest";
import { Backoff } from "../src/backoff.js";

describe("Backoff", () => {
  it("doubles up to its ceiling, with full jitter below it", () => {
    const top = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);
    expect([1, 2, 3, 4, 5, 6].map(() => top.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    const bottom = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
    expect(bottom.next()).toBe(0);
  });

  it("starts over after progress", () => {
    const b = new Backoff({ initialMs: 100 }, () => 1);
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("takes the server's retry as its base, and never waits less than Retry-After", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 60_000 }, () => 0.5);
    expect(b.next(1372)).toBe(686);
    expect(b.next(undefined, 5000)).toBe(5000);
  });
});
