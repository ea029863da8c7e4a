// Reads one generation's SSE stream with the Vercel AI SDK's own client code and prints
// the UIMessage the SDK assembled from it, as one JSON line on stdout.
//
//   node tests/clients/aisdk/read.mjs <events-url> [--last-event-id ID] [--token T]
//
// <events-url> is the broadcaster's GET /v1/streams/{id}/events. Nothing here parses SSE or
// JSON by hand: the stream goes through the same path as useChat({ resume: true }), that is
// DefaultChatTransport.reconnectToStream() (its processResponseStream() is
// parseJsonEventStream({ schema: uiMessageChunkSchema })), then readUIMessageStream()
// assembles the message. A chunk the SDK's schema rejects, or an error while assembling,
// ends the script with a non-zero exit status and a message on stderr.
//
// The raw body is only watched (a tee) to report whether `data: [DONE]` ended it; the SDK
// itself skips [DONE]. Exit status: 0 ok, 1 the SDK rejected the stream or the request
// failed, 2 bad usage. A 204 (nothing left to replay) prints {"status":204,...} and exits 0,
// as useChat treats it: no stream to resume.

import {
  DefaultChatTransport,
  getToolName,
  isReasoningUIPart,
  isTextUIPart,
  isToolUIPart,
} from "ai";
import { assemble, failer } from "./assemble.mjs";

function usage(msg) {
  process.stderr.write(`read.mjs: ${msg}\nusage: node read.mjs <events-url> [--last-event-id ID] [--token T]\n`);
  process.exit(2);
}

const fail = failer("read.mjs");

const args = process.argv.slice(2);
let url;
let lastEventId;
let token;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--last-event-id") lastEventId = args[++i];
  else if (args[i] === "--token") token = args[++i];
  else if (url === undefined) url = args[i];
  else usage(`unexpected argument ${args[i]}`);
}
if (!url) usage("missing <events-url>");

// What came over the wire besides what the SDK makes of it.
const wire = {
  status: null,
  contentType: null,
  uiMessageStreamHeader: null,
  raw: "",
  rawDone: Promise.resolve(),
};

async function teeingFetch(input, init) {
  const response = await fetch(input, init);
  wire.status = response.status;
  wire.contentType = response.headers.get("content-type");
  wire.uiMessageStreamHeader = response.headers.get("x-vercel-ai-ui-message-stream");
  if (!response.ok || !response.body) return response;
  const [forSdk, forUs] = response.body.tee();
  wire.rawDone = (async () => {
    const decoder = new TextDecoder();
    for await (const bytes of forUs) wire.raw += decoder.decode(bytes, { stream: true });
  })().catch(() => {});
  return new Response(forSdk, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

const headers = {};
if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
if (token !== undefined) headers.authorization = `Bearer ${token}`;

const transport = new DefaultChatTransport({
  fetch: teeingFetch,
  // useChat would call {api}/{chatId}/stream; point the same code at the broadcaster.
  prepareReconnectToStreamRequest: () => ({ api: url, headers }),
});

const timer = setTimeout(() => fail("no complete stream within 60 s"), 60_000);

let chunks;
try {
  chunks = await transport.reconnectToStream({ chatId: "aisdk-test" });
} catch (err) {
  fail(`GET ${url} failed (HTTP ${wire.status})`, err);
}
if (chunks === null) {
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ status: 204, message: null })}\n`);
  process.exit(0);
}

const { message, chunk_types: chunkTypes } = await assemble(chunks, fail);
if (!message) fail(`the stream held no UI message (chunks: ${JSON.stringify(chunkTypes)})`);
await wire.rawDone;
clearTimeout(timer);

const parts = message.parts;
const text = parts.filter(isTextUIPart).map((p) => p.text).join("");
const reasoning = parts.filter(isReasoningUIPart).map((p) => p.text).join("");
const tools = parts.filter(isToolUIPart).map((p) => ({
  toolCallId: p.toolCallId,
  toolName: getToolName(p),
  type: p.type,
  input: p.input,
  state: p.state,
}));

const out = {
  status: wire.status,
  content_type: wire.contentType,
  ui_message_stream_header: wire.uiMessageStreamHeader,
  done: /(^|\n)data: \[DONE\]\n\n$/.test(wire.raw),
  message_id: message.id,
  role: message.role,
  metadata: message.metadata ?? null,
  part_types: parts.map((p) => p.type),
  text,
  text_parts: parts.filter(isTextUIPart).map((p) => ({ text: p.text, state: p.state })),
  reasoning,
  reasoning_parts: parts
    .filter(isReasoningUIPart)
    .map((p) => ({ text: p.text, state: p.state, providerMetadata: p.providerMetadata ?? null })),
  tools,
  chunk_types: chunkTypes,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0); // the end of a run in tests/clients/host.mjs too
