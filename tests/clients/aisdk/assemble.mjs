// What read.mjs and chat.mjs share: failing with the SDK's own reason, and assembling a
// stream of UI message chunks into a message with the SDK's readUIMessageStream, counting
// the chunk types as the SDK parsed and validated them.

import { readUIMessageStream } from "ai";

export function failer(script) {
  return (msg, err) => {
    let detail = "";
    if (err) {
      detail = `\n${err.name ?? "Error"}: ${err.message ?? String(err)}`;
      if (err.value !== undefined) detail += `\nrejected value: ${JSON.stringify(err.value)}`;
      if (err.cause) detail += `\ncause: ${err.cause.message ?? String(err.cause)}`;
    }
    process.stderr.write(`${script}: ${msg}${detail}\n`);
    process.exit(1);
  };
}

// {message (null if the stream held none), chunk_types}; exits through `fail` when the
// SDK rejects a chunk or cannot assemble the message.
export async function assemble(chunks, fail) {
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
  return { message: message ?? null, chunk_types: chunkTypes };
}
