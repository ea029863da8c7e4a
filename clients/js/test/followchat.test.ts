// followChat against a scripted chat stream (GET /v1/chat/{id}/events): a turn another
// tab started streams into this tab's Chat; this tab's own turn is not shown twice.
import type { UIMessage } from "ai";
import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { BroadcasterChatTransport } from "../src/index.js";
import { makeChat, SDKS, text } from "./sdk.js";
import { frame, serve, sseHead, type TestServer } from "./server.js";

const FAST = { backoff: { initialMs: 5, maxMs: 20 } };


function answer(turn: number, generation: string, userText: string, words: string[]): string[] {
  const chunks: Array<Record<string, unknown>> = [
    { type: "start", messageId: `a${turn}` },
    { type: "text-start", id: "t0" },
    ...words.map((delta) => ({ type: "text-delta", id: "t0", delta })),
    { type: "text-end", id: "t0" },
    { type: "finish", finishReason: "stop" },
  ];
  const user = { id: `u${turn}`, role: "user", parts: [{ type: "text", text: userText }] };
  return [
    `id: ${turn}:0\ndata: ${JSON.stringify({ type: "data-chat-turn", data: { turn, generationId: generation, userMessage: user }, transient: true })}\n\n`,
    ...chunks.map((c, i) => frame(`${turn}:${i + 1}.0000000${i}`, c)),
  ];
}
const until = async (check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
};

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe.each(SDKS)("followChat with %s", (_name, Sdk) => {
  it("streams a turn started elsewhere into the Chat, and leaves this tab's own turn to its submit", async () => {
    let events: ServerResponse | null = null;
    server = await serve((req, res) => {
      if (req.path === "/v1/chat/f1/events") {
        sseHead(res);
        events = res;
        return;
      }
      // This tab's submit: its own generation, announced on the chat's stream too.
      sseHead(res, { "x-generation-id": "g-own" });
      for (const chunk of answer(2, "g-own", "mine", ["Mine."])) {
        events!.write(chunk);
        if (!chunk.includes("data-chat-turn")) res.write(chunk.replace(/^id: 2:/, "id: "));
      }
      res.end("data: [DONE]\n\n");
    });
    const transport = new BroadcasterChatTransport({ api: `${server.url}/v1/chat`, history: "client", ...FAST });
    const chat = makeChat(Sdk, "f1", transport);
    const stop = transport.followChat<UIMessage>("f1", {
      resumeStream: () => chat.resumeStream(),
      setMessages: (update) => (chat.messages = update(chat.messages)),
    });
    await until(() => events !== null);
    for (const chunk of answer(1, "g-other", "from the other tab", ["Hello ", "there."])) events!.write(chunk);
    await until(() => chat.messages.length === 2 && chat.status === "ready" && text(chat.messages[1]) === "Hello there.");
    expect(chat.messages[0]).toMatchObject({ id: "u1", role: "user" });
    await chat.sendMessage({ text: "mine" });
    await new Promise((r) => setTimeout(r, 50));
    expect(chat.messages.map((m) => [m.role, text(m)])).toEqual([
      ["user", "from the other tab"],
      ["assistant", "Hello there."],
      ["user", "mine"],
      ["assistant", "Mine."],
    ]);
    expect(server.requests.filter((r) => r.path === "/v1/chat/f1/stream")).toEqual([]);
    stop();
  });
});
