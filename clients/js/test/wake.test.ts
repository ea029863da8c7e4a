// The moments a browser comes back (wake.ts), in Node with a stand-in document and window:
// `online` cuts a backoff short, the page shown again makes a silent connection again,
// the page hidden does nothing.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { followStream } from "../src/index.js";
import type { ServerResponse } from "node:http";
import { all, frame, serve, type TestServer } from "./server.js";

const idOf = (seq: number) => `${seq}.${seq.toString(16).padStart(8, "0")}`;
const progress = (seq: number) => frame(idOf(seq), { type: seq === 3 ? "finish" : "data-progress", seq });
// A backoff far beyond the test's timeout: the stream ends in time only if a wake cuts it.
const SLOW = { backoff: { initialMs: 600_000, maxMs: 600_000 } };
// No `retry:` field: the server's own would set the backoff's base.
const sseHead = (res: ServerResponse) => res.writeHead(200, { "content-type": "text/event-stream" });
const page = globalThis as unknown as { document?: EventTarget & { visibilityState: string }; window?: EventTarget };

let server: TestServer | null = null;
beforeEach(() => {
  page.document = Object.assign(new EventTarget(), { visibilityState: "visible" });
  page.window = new EventTarget();
  vi.spyOn(Math, "random").mockReturnValue(1);
});
afterEach(async () => {
  vi.restoreAllMocks();
  delete page.document;
  delete page.window;
  await server?.close();
  server = null;
});

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
};

describe("a wake", () => {
  it("online: a connection waiting out its backoff is made again at once", async () => {
    server = await serve((req, res, i) => {
      sseHead(res);
      if (i === 0) return void res.end(progress(1)); // cut: the next try waits its backoff
      res.end(progress(2) + progress(3));
    });
    const got: string[] = [];
    const done = (async () => {
      for await (const e of followStream(`${server!.url}/s`, SLOW)) got.push(e.id!);
    })();
    await until(() => got.length === 1);
    await new Promise((r) => setTimeout(r, 50)); // into the pause
    expect(server.requests).toHaveLength(1);
    page.window!.dispatchEvent(new Event("online"));
    await done;
    expect(got).toEqual([idOf(1), idOf(2), idOf(3)]);
    expect(server.requests[1]!.headers["last-event-id"]).toBe(idOf(1));
  });

  it("the page shown again: a connection silent for a while is made again; hidden, nothing", async () => {
    server = await serve((req, res, i) => {
      sseHead(res);
      if (i === 0) return void res.write(progress(1)); // then silence, as a phone asleep
      res.end(progress(2) + progress(3));
    });
    const events = all(followStream(`${server.url}/s`, SLOW));
    await until(() => server!.requests.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    const real = Date.now.bind(Date);
    vi.spyOn(Date, "now").mockImplementation(() => real() + 30_000); // the phone slept 30 s
    page.document!.visibilityState = "hidden";
    page.document!.dispatchEvent(new Event("visibilitychange"));
    await new Promise((r) => setTimeout(r, 100));
    expect(server.requests).toHaveLength(1);
    page.document!.visibilityState = "visible";
    page.document!.dispatchEvent(new Event("visibilitychange"));
    expect((await events).map((e) => e.id)).toEqual([idOf(1), idOf(2), idOf(3)]);
    expect(server.requests[1]!.headers["last-event-id"]).toBe(idOf(1));
  });
});
