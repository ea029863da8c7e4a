// Server-Sent Events, parsed as the HTML standard's event-stream interpretation does:
// lines end with CRLF, LF or CR; a blank line dispatches; `data` lines join with "\n";
// comments (": ping") and unknown fields are ignored; an `id` with a NUL is ignored.

/** One dispatched SSE frame: its own `id:` (undefined when it had none; a frame without
 * one leaves the resume point where it was), `event:` and `data:`. */
export interface SSEFrame {
  id: string | undefined;
  event: string;
  data: string;
}

/** Turns decoded text, pushed in pieces of any size, into frames. */
export class SSEParser {
  private buffer = "";
  private pendingCR = false;
  private data: string[] = [];
  private event = "";
  private id: string | undefined = undefined;
  private started = false;
  /** The last `retry:` the stream asked for, in milliseconds. */
  retry: number | undefined = undefined;

  /** Feeds `text`; returns the frames it completed. */
  push(text: string): SSEFrame[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    const frames: SSEFrame[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      const frame = this.line(this.buffer.slice(start, end));
      if (frame) frames.push(frame);
      start = end + 1;
      if (end === cr) {
        if (start === this.buffer.length) this.pendingCR = true;
        else if (this.buffer[start] === "\n") start += 1;
      }
    }
    this.buffer = this.buffer.slice(start);
    return frames;
  }

  private line(line: string): SSEFrame | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  private dispatch(): SSEFrame | null {
    const frame: SSEFrame | null =
      this.data.length > 0
        ? { id: this.id, event: this.event || "message", data: this.data.join("\n") }
        : null;
    this.data = [];
    this.event = "";
    this.id = undefined;
    return frame;
  }
}

/** The frames of a response body, as they arrive. */
export async function* readFrames(
  body: ReadableStream<Uint8Array>,
  parser: SSEParser = new SSEParser(),
  onBytes?: () => void,
): AsyncGenerator<SSEFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onBytes?.();
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
  } finally {
    reader.cancel().catch(() => {});
  }
}
