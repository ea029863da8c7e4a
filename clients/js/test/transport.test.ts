// BroadcasterChatTransport under the AI SDK's own Chat (AbstractChat of ai 7 and of ai 6),
// against a scripted chat server: what it sends, how it resumes, what the SDK ends with.
import type { UIMessage } from "ai";
import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { BroadcasterChatTransport } from "../src/index.js";
import { makeChat, SDKS, text } from "./sdk.js";
import { frame, jsonAnswer, serve, sseHead, type Recorded, type TestServer } from "./server.js";

const FAST = { backoff: { initialMs: 5, maxMs: 20 } };
const GEN = "cgen";
const ANSWER = [
  { type: "start", messageId: "m-answer" },
  { type: "start-step" },
  { type: "text-start", id: "t0" },
  { type: "text-delta", id: "t0", delta: "Hello" },
  { type: "text-delta", id: "t0", delta: ", " },
  { type: "text-delta", id: "t0", delta: "world" },
  { type: "text-end", id: "t0" },
  { type: "finish-step" },
  { type: "finish", finishReason: "stop" },
];
const id = (seq: number) => `${seq}.${seq.toString(16).padStart(8, "0")}`;


let answers = 0; // each answer's message id is its own
function stream(res: ServerResponse, from: number, to: number, end: boolean, headers: Record<string, string> = {}) {
  sseHead(res, { "x-generation-id": GEN, ...headers });
  if (from === 1) answers += 1;
  for (let seq = from; seq <= to; seq++) {
    res.write(frame(id(seq), seq === 1 ? { type: "start", messageId: `m-answer-${answers}` } : ANSWER[seq - 1]!));
  }
  if (end) res.write("data: [DONE]\n\n");
  res.end();
}

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});
const posts = (s: TestServer) => s.requests.filter((r: Recorded) => r.method === "POST" && r.path === "/v1/chat");

describe.each(SDKS)("BroadcasterChatTransport with %s", (_name, Sdk) => {
  it("retries a submit that got no answer with the same Idempotency-Key, and resumes a cut answer as its run", async () => {
    server = await serve((req, res) => {
      if (req.method === "POST") {
        if (posts(server!).length === 1) return void res.destroy(); // the front-end died
        return stream(res, 1, 4, false, { "x-workflow-run-id": `c1~${GEN}~0` });
      }
      stream(res, 5, 9, true);
    });
    let minted = 0; // a new token each time it is asked: a retry must not ask
    const getToken = () => `t${++minted}`;
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, history: "client", getToken, ...FAST });
    const chat = makeChat(Sdk, "c1", transport);
    await chat.sendMessage({ text: "hi" });
    expect(chat.status).toBe("ready");
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(text(chat.messages[1])).toBe("Hello, world");
    const [first, second] = posts(server);
    expect(first!.headers["idempotency-key"]).toBeTruthy();
    expect(second!.headers["idempotency-key"]).toBe(first!.headers["idempotency-key"]);
    // The server scopes a key to the token: the retry carries the first one's.
    expect(second!.headers.authorization).toBe(first!.headers.authorization);
    expect(second!.body).toBe(first!.body);
    expect(JSON.parse(first!.body)).toMatchObject({ id: "c1", trigger: "submit-message", messages: [{ role: "user" }] });
    const resume = server.requests[2]!;
    expect(resume.path).toBe(`/v1/chat/c1~${GEN}~0/stream?startIndex=4`);
    expect(resume.headers["last-event-id"]).toBe(id(4));
  });

  it("sends only the new message; a server that wants the whole chat gets it, once told so", async () => {
    server = await serve((req, res) => {
      if (req.method === "POST" && "message" in JSON.parse(req.body)) {
        return jsonAnswer(res, 422, { error: "invalid_request", details: [{ loc: ["messages"], msg: "Field required" }] });
      }
      stream(res, 1, 9, true);
    });
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, ...FAST });
    const chat = makeChat(Sdk, "c2", transport);
    await chat.sendMessage({ text: "one" });
    await chat.sendMessage({ text: "two" });
    const bodies = posts(server).map((r) => JSON.parse(r.body));
    expect(bodies[0]).toMatchObject({ id: "c2", message: { role: "user" } });
    expect(bodies[0].messages).toBeUndefined();
    expect(bodies[1].messages).toHaveLength(1);
    expect(bodies[2].messages).toHaveLength(3);
    const keys = posts(server).map((r) => r.headers["idempotency-key"]);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
    expect(chat.messages).toHaveLength(4);
  });

  it("resumes a submit's answer cut before its first event as its run, never sending it again", async () => {
    const asked: boolean[] = [];
    server = await serve((req, res) => {
      if (req.method === "POST") {
        sseHead(res, { "x-generation-id": GEN, "x-workflow-run-id": `c7~${GEN}~0` });
        res.write(frame(null, { type: "data-token-expired", data: { reason: "expired" }, transient: true }));
        return void res.end();
      }
      stream(res, 1, 9, true);
    });
    const getToken = ({ refresh }: { refresh: boolean }) => {
      asked.push(refresh);
      return refresh ? "new" : "old";
    };
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, getToken, ...FAST });
    const chat = makeChat(Sdk, "c7", transport);
    await chat.sendMessage({ text: "hi" });
    expect(text(chat.messages[1])).toBe("Hello, world");
    expect(posts(server)).toHaveLength(1);
    const [resume] = server.requests.filter((r) => r.method === "GET");
    expect(resume!.path).toBe(`/v1/chat/c7~${GEN}~0/stream?startIndex=0`);
    expect(resume!.headers["last-event-id"]).toBeUndefined();
    expect(resume!.headers.authorization).toBe("Bearer new");
    expect(asked).toEqual([false, true]);
  });

  it("a message the server finds wrong is an error, not a reason to send the whole chat", async () => {
    server = await serve((req, res) => {
      const body = JSON.parse(req.body);
      if (body.message?.parts[0].text === "bad") {
        const details = [{ loc: ["message", "parts", 0], msg: "Extra inputs are not permitted" }];
        return jsonAnswer(res, 422, { error: "invalid_request", details });
      }
      stream(res, 1, 9, true);
    });
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, ...FAST });
    const chat = makeChat(Sdk, "c8", transport);
    await chat.sendMessage({ text: "bad" });
    expect(chat.error?.message).toContain("422 invalid_request");
    await chat.sendMessage({ text: "good" });
    const bodies = posts(server).map((r) => JSON.parse(r.body));
    expect(bodies.map((b) => [b.message?.parts[0].text, b.messages])).toEqual([
      ["bad", undefined],
      ["good", undefined],
    ]);
  });

  it("sends one message to a server that keeps the chat", async () => {
    server = await serve((req, res) => stream(res, 1, 9, true));
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, ...FAST });
    const chat = makeChat(Sdk, "c3", transport);
    await chat.sendMessage({ text: "one" });
    await chat.sendMessage({ text: "two" });
    const bodies = posts(server).map((r) => JSON.parse(r.body));
    expect(bodies.map((b) => b.message.parts[0].text)).toEqual(["one", "two"]);
  });

  it("stop() also stops the model; a resume then replays from memory and asks only for what is new", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    server = await serve(async (req, res) => {
      if (req.path.endsWith("/stop")) return jsonAnswer(res, 202, { status: "cancelled" });
      if (req.method === "POST") {
        sseHead(res, { "x-generation-id": GEN });
        for (let seq = 1; seq <= 4; seq++) res.write(frame(id(seq), ANSWER[seq - 1]!));
        await held;
        return void res.end();
      }
      stream(res, 5, 9, true);
    });
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, ...FAST });
    const chat = makeChat(Sdk, "c4", transport);
    const sent = chat.sendMessage({ text: "hi" });
    while (text(chat.messages[1]) !== "Hello") await new Promise((r) => setTimeout(r, 5));
    await chat.stop();
    await sent;
    release();
    while (!server.requests.some((r) => r.path === "/v1/chat/c4/stop")) await new Promise((r) => setTimeout(r, 5));
    expect(chat.status).toBe("ready");
    await chat.resumeStream();
    const resume = server.requests.find((r) => r.method === "GET")!;
    expect(resume.path).toBe("/v1/chat/c4/stream");
    expect(resume.headers["last-event-id"]).toBe(id(4));
    expect(chat.messages).toHaveLength(2);
    expect(text(chat.messages[1])).toBe("Hello, world");
  });

  it("a resume replaced by another does not stop the model; nothing running is a 204", async () => {
    server = await serve((req, res) => {
      if (req.path.endsWith("/stop")) return jsonAnswer(res, 202, {});
      res.writeHead(204);
      res.end();
    });
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, ...FAST });
    const chat = makeChat(Sdk, "c5", transport);
    await Promise.all([chat.resumeStream(), chat.resumeStream()]);
    await new Promise((r) => setTimeout(r, 30));
    expect(chat.status).toBe("ready");
    expect(server.requests.filter((r) => r.path.endsWith("/stop"))).toEqual([]);
  });

  it("asks getToken for each request, naming the chat, and again after a 401", async () => {
    const asked: Array<{ refresh: boolean; chatId?: string }> = [];
    server = await serve((req, res) => {
      if (req.headers.authorization === "Bearer old") return jsonAnswer(res, 401, { error: "token_expired" });
      stream(res, 1, 9, true);
    });
    const getToken = (c: { refresh: boolean; chatId?: string }) => {
      asked.push(c);
      return c.refresh ? "new" : "old";
    };
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, getToken, ...FAST });
    const chat = makeChat(Sdk, "c6", transport);
    await chat.sendMessage({ text: "hi" });
    expect(text(chat.messages[1])).toBe("Hello, world");
    expect(asked).toEqual([
      { refresh: false, chatId: "c6" },
      { refresh: true, chatId: "c6" },
    ]);
    expect(posts(server).map((r) => r.headers.authorization)).toEqual(["Bearer old", "Bearer new"]);
  });
});
