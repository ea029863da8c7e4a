// Resumes a chat answer with @ai-sdk/workflow 1.0.9's WorkflowChatTransport (before
// 1.0.17: no orphan-chunk filter, no framing repair), unmodified, and reads it with the
// AI SDK's readUIMessageStream (ai 7.0.9, the version it depends on); prints one JSON
// line on stdout: the chunks, the message, the requests with their tail index, the
// transport's warnings and the chunk count its onChatEnd was told.
//
//   node tests/clients/workflow-old/reconnect.mjs < {"api", "chatId", "startIndex"}
//
// A resume that lands mid-part made this version fail: readUIMessageStream rejects a
// delta whose part never started. Exit status: 0 ok, 1 failure (the reason on stderr).

import { readUIMessageStream } from "ai";
import { WorkflowChatTransport } from "@ai-sdk/workflow";

function fail(msg, err) {
  const detail = err ? `\n${err.name ?? "Error"}: ${err.message ?? String(err)}` : "";
  process.stderr.write(`workflow-old/reconnect.mjs: ${msg}${detail}\n`);
  process.exit(1);
}

let input = "";
for await (const bytes of process.stdin) input += bytes;
const request = JSON.parse(input);

const warnings = [];
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.map(String).join(" "));
  warn(...args);
};
const requests = [];
const ends = [];
const transport = new WorkflowChatTransport({
  api: request.api,
  fetch: async (url, init) => {
    const response = await fetch(url, init);
    requests.push({
      url: String(url),
      status: response.status,
      tailIndex: response.headers.get("x-workflow-stream-tail-index"),
    });
    return response;
  },
  onChatEnd: ({ chunkIndex }) => ends.push(chunkIndex),
  maxConsecutiveErrors: 2,
});

const timer = setTimeout(() => fail("no result within 60 s"), 60_000);
const chunks = [];
let message = null;
try {
  const stream = await transport.reconnectToStream({
    chatId: request.chatId,
    startIndex: request.startIndex,
  });
  const counted = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  for await (const m of readUIMessageStream({ stream: counted, terminateOnError: true })) message = m;
} catch (err) {
  fail("the resume failed", err);
}
clearTimeout(timer);
process.stdout.write(`${JSON.stringify({ chunks, message, requests, warnings, ends })}\n`);
process.exit(0);
