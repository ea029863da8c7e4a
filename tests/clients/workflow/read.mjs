// Reads one generation's SSE stream with the AI SDK 7's own client code (ai 7, as
// tests/clients/aisdk/read.mjs does with ai 6) and prints the UIMessage the SDK
// assembled, as one JSON line on stdout.
//
//   node tests/clients/workflow/read.mjs <events-url>
//
// The stream goes through DefaultChatTransport.reconnectToStream() (each chunk validated
// against the SDK's uiMessageChunkSchema), then readUIMessageStream() assembles the
// message. A chunk the SDK rejects, or an error while assembling, ends the script with a
// non-zero exit status and the SDK's reason on stderr.

import { DefaultChatTransport, readUIMessageStream } from "ai";

function fail(msg, err) {
  const detail = err ? `\n${err.name ?? "Error"}: ${err.message ?? String(err)}` : "";
  process.stderr.write(`workflow/read.mjs: ${msg}${detail}\n`);
  process.exit(1);
}

const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: node read.mjs <events-url>\n");
  process.exit(2);
}

const transport = new DefaultChatTransport({
  prepareReconnectToStreamRequest: () => ({ api: url }),
});
const timer = setTimeout(() => fail("no complete stream within 60 s"), 60_000);

let chunks;
try {
  chunks = await transport.reconnectToStream({ chatId: "ai7-test" });
} catch (err) {
  fail(`GET ${url} failed`, err);
}
if (chunks === null) fail("nothing to read (204)");

const chunkTypes = [];
const counted = chunks.pipeThrough(
  new TransformStream({
    transform(chunk, controller) {
      chunkTypes.push(chunk.type);
      controller.enqueue(chunk);
    },
  }),
);
let message;
let problem;
try {
  for await (const m of readUIMessageStream({
    stream: counted,
    terminateOnError: true,
    onError: (err) => {
      problem = err;
    },
  })) {
    message = m;
  }
} catch (err) {
  fail("the AI SDK rejected the stream", err);
}
if (problem) fail("the AI SDK could not assemble the message", problem);
if (!message) fail(`the stream held no UI message (chunks: ${JSON.stringify(chunkTypes)})`);
clearTimeout(timer);

const parts = message.parts;
const out = {
  message_id: message.id,
  metadata: message.metadata ?? null,
  part_types: parts.map((p) => p.type),
  text: parts.filter((p) => p.type === "text").map((p) => p.text).join(""),
  text_parts: parts.filter((p) => p.type === "text").map((p) => ({ text: p.text, state: p.state })),
  reasoning_parts: parts
    .filter((p) => p.type === "reasoning")
    .map((p) => ({ text: p.text, state: p.state })),
  tools: parts
    .filter((p) => p.type.startsWith("tool-"))
    .map((p) => ({ toolCallId: p.toolCallId, type: p.type, state: p.state })),
  chunk_types: chunkTypes,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0); // the end of a run in tests/clients/host.mjs too
