// Follows a chat's stream (GET /v1/chat/{id}/events) with the Vercel AI SDK's own client
// code and prints, as one JSON line, each of its first TURNS answers as the SDK assembled
// it.
//
//   node tests/clients/aisdk/follow_chat.mjs <events-url> TURNS [--last-event-id ID]
//
// The response goes through DefaultChatTransport.reconnectToStream() (its
// parseJsonEventStream with the SDK's uiMessageChunkSchema: a chunk it rejects fails the
// script), pointed at the chat's stream. The chunks are cut at each `data-chat-turn`
// announcement, and each turn's chunks are assembled by readUIMessageStream, as a tab
// would for each answer it follows. Exit status: 0 ok, 1 failure, 2 bad usage.

import { DefaultChatTransport } from "ai";
import { assemble, failer } from "./assemble.mjs";

const fail = failer("follow_chat.mjs");
const [url, turnsArg, flag, lastEventId] = process.argv.slice(2);
const turns = Number(turnsArg);
if (!url || !(turns > 0) || (flag && flag !== "--last-event-id")) {
  process.stderr.write("usage: node follow_chat.mjs <events-url> TURNS [--last-event-id ID]\n");
  process.exit(2);
}

const transport = new DefaultChatTransport({
  prepareReconnectToStreamRequest: () => ({
    api: url,
    headers: lastEventId ? { "last-event-id": lastEventId } : {},
  }),
});
const stream = await transport.reconnectToStream({ chatId: "followed" });
if (!stream) fail("the chat's stream answered 204");

// One ReadableStream of chunks per turn, from the one stream of the chat.
const reader = stream.getReader();
let pending = null; // the announcement that opens the next turn
async function nextTurn() {
  let announced = pending;
  pending = null;
  while (!announced) {
    const { value, done } = await reader.read();
    if (done) fail("the chat's stream ended");
    if (value.type === "data-chat-turn") announced = value;
  }
  const chunks = new ReadableStream({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.close();
      if (value.type === "data-chat-turn") {
        pending = value;
        return controller.close();
      }
      controller.enqueue(value);
      if (["finish", "abort", "error"].includes(value.type)) controller.close();
    },
  });
  return { announced: announced.data, ...(await assemble(chunks, fail)) };
}

const out = [];
for (let i = 0; i < turns; i++) out.push(await nextTurn());
await reader.cancel().catch(() => {});
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
