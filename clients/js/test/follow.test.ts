// followStream and followEvents against scripted servers: connections cut mid-stream,
// refused, slow to answer, tokens that expire; each event once, in order.
import { afterEach, describe, expect, it } from "vitest";
import { BroadcasterError, followEvents, followStream } from "../src/index.js";
import { all, frame, jsonAnswer, serve, sseHead, type TestServer } from "./server.js";

const FAST = { backoff: { initialMs: 5, maxMs: 20 } };
const events = Array.from({ length: 10 }, (_, i) => ({ type: i === 9 ? "finish" : "data-progress", pct: i * 10 }));
const idOf = (seq: number) => `${seq}.${seq.toString(16).padStart(8, "0")}`;
const seqAfter = (lastId: string | undefined) => (lastId ? Number(lastId.split(".")[0]) : 0);

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe("followStream", () => {
  it("resumes after a cut with Last-Event-ID, each event once, and ends at the terminal event", async () => {
    // Each response sends three events, the last of them again after a cut-short resume
    // point would have it, then drops the connection (no [DONE]).
    server = await serve((req, res) => {
      const from = seqAfter(req.headers["last-event-id"] as string | undefined);
      sseHead(res);
      for (let seq = Math.max(1, from); seq <= Math.min(10, from + 3); seq++) res.write(frame(idOf(seq), events[seq - 1]!));
      if (from + 3 >= 10) res.write("data: [DONE]\n\n");
      res.end();
    });
    const got = await all(followStream(`${server.url}/v1/streams/job/events`, FAST));
    expect(got.map((e) => e.data)).toEqual(events);
    expect(got.map((e) => e.id)).toEqual(events.map((_, i) => idOf(i + 1)));
    const resumes = server.requests.map((r) => r.headers["last-event-id"] ?? null);
    expect(resumes).toEqual([null, idOf(3), idOf(6), idOf(9)]);
  });

  it("starts after lastEventId, and a 204 (nothing after it) ends at once", async () => {
    server = await serve((req, res) => {
      res.writeHead(204);
      res.end();
    });
    expect(await all(followStream(`${server.url}/s`, { ...FAST, lastEventId: idOf(10) }))).toEqual([]);
    expect(server.requests[0]!.headers["last-event-id"]).toBe(idOf(10));
  });

  it("waits as Retry-After says on 503 and 429, and retries a dropped connection", async () => {
    server = await serve((req, res, i) => {
      if (i === 0) return jsonAnswer(res, 503, { error: "busy" }, { "retry-after": "0" });
      if (i === 1) return void res.destroy();
      if (i === 2) return jsonAnswer(res, 429, { error: "too_many_connections" }, { "retry-after": "0" });
      sseHead(res);
      res.write(frame(idOf(1), { type: "finish" }));
      res.end();
    });
    const got = await all(followStream(`${server.url}/s`, FAST));
    expect(got.map((e) => e.type)).toEqual(["finish"]);
    expect(server.requests).toHaveLength(4);
  });

  it("throws the error body of a refusal it cannot cure", async () => {
    server = await serve((req, res) => jsonAnswer(res, 409, { error: "resume_point_unknown", message: "no", last_event_id: 3 }));
    const error = await all(followStream(`${server.url}/s`, FAST)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BroadcasterError);
    expect((error as BroadcasterError).code).toBe("resume_point_unknown");
    expect((error as BroadcasterError).body.last_event_id).toBe(3);
  });

  it("asks getToken again after a 401, and after the token-expired frame resumes where it was", async () => {
    const tokens: Array<{ refresh: boolean }> = [];
    let minted = 0;
    server = await serve((req, res) => {
      const auth = req.headers.authorization;
      if (auth === "Bearer t1") return jsonAnswer(res, 401, { error: "token_expired" });
      const from = seqAfter(req.headers["last-event-id"] as string | undefined);
      sseHead(res);
      if (auth === "Bearer t2") {
        res.write(frame(idOf(1), events[0]!));
        res.write(frame(idOf(2), events[1]!));
        res.write(frame(null, { type: "data-token-expired", data: { reason: "expired" }, transient: true }));
        return void res.end();
      }
      for (let seq = from + 1; seq <= 10; seq++) res.write(frame(idOf(seq), events[seq - 1]!));
      res.end("data: [DONE]\n\n");
    });
    const getToken = (context: { refresh: boolean }) => {
      tokens.push(context);
      minted += context.refresh || minted === 0 ? 1 : 0;
      return `t${minted}`;
    };
    const got = await all(followStream(`${server.url}/s`, { ...FAST, getToken }));
    expect(got.map((e) => e.data)).toEqual(events);
    expect(tokens).toEqual([{ refresh: false }, { refresh: true }, { refresh: true }]);
    expect(server.requests.map((r) => [r.headers.authorization, r.headers["last-event-id"] ?? null])).toEqual([
      ["Bearer t1", null],
      ["Bearer t2", null],
      ["Bearer t3", idOf(2)],
    ]);
  });

  it("a second 401 in a row is final", async () => {
    server = await serve((req, res) => jsonAnswer(res, 401, { error: "unauthorized" }));
    const error = await all(followStream(`${server.url}/s`, { ...FAST, getToken: () => "t" })).catch((e: unknown) => e);
    expect((error as BroadcasterError).status).toBe(401);
    expect(server.requests).toHaveLength(2);
  });

  it("makes a silent connection again after idleTimeoutMs", async () => {
    // Answered by what the client has (its Last-Event-ID), not by the request's number: on a
    // loaded machine the timer may fire before the first event is read, and the client
    // then asks again from the start.
    server = await serve((req, res) => {
      sseHead(res);
      if (req.headers["last-event-id"] !== idOf(1)) return void res.write(frame(idOf(1), events[0]!)); // then silence
      res.write(frame(idOf(2), { type: "finish" }));
      res.end();
    });
    const got = await all(followStream(`${server.url}/s`, { ...FAST, idleTimeoutMs: 200 }));
    expect(got.map((e) => e.id)).toEqual([idOf(1), idOf(2)]);
    expect(server.requests.at(-1)!.headers["last-event-id"]).toBe(idOf(1));
    expect(server.requests.length).toBeGreaterThanOrEqual(2);
  });

  it("gives up after maxAttempts failures in a row", async () => {
    server = await serve((req, res) => void res.destroy());
    await expect(all(followStream(`${server.url}/s`, { ...FAST, maxAttempts: 3 }))).rejects.toThrow();
    expect(server.requests).toHaveLength(3);
  });

  it("ends quietly when its signal aborts", async () => {
    server = await serve((req, res) => {
      sseHead(res);
      res.write(frame(idOf(1), events[0]!));
    });
    const controller = new AbortController();
    const got: unknown[] = [];
    for await (const e of followStream(`${server.url}/s`, { ...FAST, signal: controller.signal })) {
      got.push(e);
      controller.abort();
    }
    expect(got).toHaveLength(1);
  });
});

describe("followEvents", () => {
  const dash = (stream: string, seq: number, event: Record<string, unknown>) =>
    `id: -.~${stream}=${seq}\nevent: ${String(event.type)}\ndata: ${JSON.stringify({ stream, seq, event })}\n\n`;

  it("follows named streams and prefixes on one connection, resumes by its id, each event once", async () => {
    server = await serve((req, res, i) => {
      sseHead(res);
      if (i === 0) {
        res.write(dash("a", 1, { type: "data-progress", pct: 1 }));
        res.write(dash("b", 1, { type: "data-progress", pct: 2 }));
        return void res.end();
      }
      res.write(dash("b", 1, { type: "data-progress", pct: 2 })); // seen: dropped
      res.write(dash("a", 2, { type: "finish" }));
      res.write(dash("b", 2, { type: "finish" }));
      res.end();
    });
    const url = `${server.url}/v1/events`;
    const got = await all(followEvents(url, { streams: ["a", "b"] }, FAST));
    expect(got.map((e) => [e.stream, e.seq, e.type])).toEqual([
      ["a", 1, "data-progress"],
      ["b", 1, "data-progress"],
      ["a", 2, "finish"],
      ["b", 2, "finish"],
    ]);
    expect(got[1]!.data).toEqual({ type: "data-progress", pct: 2 });
    expect(server.requests[0]!.path).toBe("/v1/events?stream=a&stream=b");
    expect(server.requests[1]!.headers["last-event-id"]).toBe("-.~b=1");
  });

  it("keeps following a prefix after its streams end", async () => {
    server = await serve((req, res) => {
      sseHead(res);
      res.write(dash("job-1", 1, { type: "finish" }));
    });
    const controller = new AbortController();
    const got = [];
    for await (const e of followEvents(`${server.url}/v1/events`, { prefix: ["job-"], chats: ["c1"] }, { ...FAST, signal: controller.signal })) {
      got.push(e);
      setTimeout(() => controller.abort(), 50);
    }
    expect(got).toHaveLength(1);
    expect(server.requests[0]!.path).toBe("/v1/events?prefix=job-&chat=c1");
  });
});
