// The transport under the AI SDK's own Chat in Node (ai 7's or ai 6's AbstractChat), one
// chat, as a tab would hold it. Its request on stdin (JSON):
//   {"api", "chatId", "sdk": "7" | "6", "text", "stopAt"?: "text seen before stop()"}
// Prints one JSON line: the chat's status, error and messages, and every request the
// transport made (method, path, status, Last-Event-ID, Idempotency-Key).

import { AbstractChat as Chat7 } from "ai";
import { AbstractChat as Chat6 } from "ai6";
import { BroadcasterChatTransport } from "@llm-stream-broadcaster/client";

const input = JSON.parse(await new Response(process.stdin).text());
const requests = [];
async function recording(url, init = {}) {
  const headers = new Headers(init.headers);
  const entry = {
    method: init.method ?? "GET",
    path: new URL(url).pathname + new URL(url).search,
    lastEventId: headers.get("last-event-id"),
    key: headers.get("idempotency-key"),
    status: null,
  };
  requests.push(entry);
  const response = await fetch(url, init);
  entry.status = response.status;
  return response;
}

class State {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }
  pushMessage(m) { this.messages = this.messages.concat([m]); }
  popMessage() { this.messages = this.messages.slice(0, -1); }
  replaceMessage(i, m) { this.messages = this.messages.slice(); this.messages[i] = structuredClone(m); }
  snapshot(x) { return structuredClone(x); }
}

const Chat = input.sdk === "6" ? Chat6 : Chat7;
const transport = new BroadcasterChatTransport({
  api: input.api,
  fetch: recording,
  backoff: { initialMs: 200, maxMs: 1000 },
});
const chat = new Chat({ id: input.chatId, transport, state: new State() });
const text = (m) => (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");
const sent = chat.sendMessage({ text: input.text });
if (input.stopAt) {
  const until = Date.now() + 30_000;
  while (!text(chat.messages[1]).includes(input.stopAt) && chat.status !== "error" && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await chat.stop();
}
await sent;
// A stop's request to the stop route goes out after the abort: let it finish.
for (let i = 0; i < 100 && input.stopAt && !requests.some((r) => r.path.endsWith("/stop") && r.status); i++) {
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write(
  `${JSON.stringify({ status: chat.status, error: chat.error?.message ?? null, messages: chat.messages, requests })}\n`,
);
process.exit(0);
