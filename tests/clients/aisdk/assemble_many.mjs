// Many stored streams, each read whole by the AI SDK's own readUIMessageStream (as a
// late joiner reading a generation from its first event would): the file named by the
// first argument holds a JSON object {streamId: [chunk, ...]}; stdout is {streamId: {text, parts, problem}} where `text` joins
// the message's text parts, `parts` is each part's type and state, and `problem` is the
// SDK's reason if it rejected the stream (null otherwise). Driven by tests/support/chaos.py.

import { readFileSync } from "node:fs";
import { readUIMessageStream } from "ai";

async function assembleOne(chunks) {
  let message = null;
  let problem = null;
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  try {
    for await (const m of readUIMessageStream({
      stream,
      terminateOnError: true,
      onError: (err) => {
        problem = String(err?.message ?? err);
      },
    })) {
      message = m;
    }
  } catch (err) {
    problem = String(err?.message ?? err);
  }
  const parts = (message?.parts ?? []).map((p) => ({ type: p.type, state: p.state ?? null }));
  const text = (message?.parts ?? [])
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");
  return { text, parts, problem };
}

const streams = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = {};
for (const [id, chunks] of Object.entries(streams)) out[id] = await assembleOne(chunks);
process.stdout.write(JSON.stringify(out));
