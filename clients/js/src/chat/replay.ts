// What an answer showed so far, kept so that a resume can give the AI SDK the whole
// answer again (the SDK rebuilds its message from the answer's `start`) while the server
// is asked only for what came after the last event seen. Consecutive deltas of one part
// are folded into one chunk, as the server's own compacted replays are.

/** A UI message stream chunk, as the server sends it. */
export type Chunk = { type: string } & Record<string, unknown>;

const DELTA_FIELDS: Record<string, string> = {
  "text-delta": "delta",
  "reasoning-delta": "delta",
  "tool-input-delta": "inputTextDelta",
};
/** Past this many (folded) chunks an answer is not kept: the server replays it instead. */
export const MAX_KEPT_CHUNKS = 10_000;

function partId(chunk: Chunk): unknown {
  return chunk.type === "tool-input-delta" ? chunk.toolCallId : chunk.id;
}

/** One answer as far as it went: its generation, the last event id, its chunks. */
export class AnswerRecord {
  readonly chunks: Chunk[] = [];
  lastEventId: string | undefined;
  ended = false;
  overflow = false;

  constructor(readonly generation: string | null) {}

  add(chunk: Chunk, id: string | undefined): void {
    if (id !== undefined) this.lastEventId = id;
    if (this.overflow) return;
    const field = DELTA_FIELDS[chunk.type];
    const last = this.chunks[this.chunks.length - 1];
    if (
      field !== undefined &&
      last !== undefined &&
      last.type === chunk.type &&
      partId(last) === partId(chunk) &&
      last.providerMetadata === undefined &&
      chunk.providerMetadata === undefined
    ) {
      this.chunks[this.chunks.length - 1] = { ...last, [field]: String(last[field] ?? "") + String(chunk[field] ?? "") };
      return;
    }
    if (this.chunks.length >= MAX_KEPT_CHUNKS) {
      this.overflow = true;
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(chunk);
  }

  /** Whether a resume can replay it from here (it began with `start` and was kept whole). */
  get replayable(): boolean {
    return !this.overflow && this.lastEventId !== undefined && this.chunks[0]?.type === "start";
  }
}
