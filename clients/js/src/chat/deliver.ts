// An answer handed to the AI SDK: a ReadableStream of UI message chunks, pulled from a
// reconnecting reader, after the chunks a resume replays from memory; each chunk kept in
// the answer's record as it goes.

import type { StreamEvent } from "../connect.js";
import type { AnswerRecord, Chunk } from "./replay.js";

/** Chunks that are the transport's business, never the SDK's. */
const NOT_FOR_THE_SDK = new Set(["data-chat-turn", "data-token-expired"]);

/** Told when the stream closes: `ended` if the answer's terminal chunk went through. */
export type OnClose = (ended: boolean) => void;

/** The stream, once its first chunk is there (null: nothing to give); errors of the first
 * request are thrown here, as the SDK expects of `sendMessages`. */
export async function deliver(
  events: AsyncGenerator<StreamEvent<unknown>>,
  record: AnswerRecord,
  replayed: readonly Chunk[],
  onClose: OnClose,
): Promise<ReadableStream<Chunk> | null> {
  let first: IteratorResult<StreamEvent<unknown>>;
  try {
    first = await events.next();
  } catch (err) {
    onClose(false);
    throw err;
  }
  if (first.done && replayed.length === 0) {
    onClose(false);
    return null;
  }
  let pending: IteratorResult<StreamEvent<unknown>> | null = first;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    onClose(record.ended);
  };
  return new ReadableStream<Chunk>({
    start(controller) {
      for (const chunk of replayed) controller.enqueue(chunk);
    },
    async pull(controller) {
      for (;;) {
        let step: IteratorResult<StreamEvent<unknown>>;
        try {
          step = pending ?? (await events.next());
        } catch (err) {
          close();
          controller.error(err);
          return;
        }
        pending = null;
        if (step.done) {
          close();
          controller.close();
          return;
        }
        const chunk = step.value.data as Chunk;
        if (NOT_FOR_THE_SDK.has(step.value.type)) continue;
        record.add(chunk, step.value.id);
        if (step.value.type === "finish" || step.value.type === "error" || step.value.type === "abort") record.ended = true;
        controller.enqueue(chunk);
        return;
      }
    },
    async cancel() {
      close();
      await events.return(undefined);
    },
  });
}
