// followStream in Node: every event of the stream at URL, through whatever happens to the
// front-end serving it, printed as one JSON line at the end.
//
//   node follow.mjs URL

import { followStream } from "@llm-stream-broadcaster/client";

const [url] = process.argv.slice(2);
const events = [];
for await (const event of followStream(url, { backoff: { initialMs: 200, maxMs: 1000 } })) {
  events.push({ id: event.id, type: event.type });
}
process.stdout.write(`${JSON.stringify({ events })}\n`);
process.exit(0);
