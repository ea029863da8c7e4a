// The chat's own stream (GET /v1/chat/{id}/events): every answer of the chat in turn,
// each opened by a transient `data-chat-turn` chunk naming its generation. The page reads
// it only for those announcements: a turn started anywhere else (another tab, another
// device) makes its panes load and follow it. It reconnects with the last id it saw
// (`<turn>:<seq>.<tag>`), so a turn started while it was away is not missed. It also
// tells of each decision on a tool approval (`data-approval`), wherever it was taken: a
// pane whose answer ended at the wait then follows the answer as it goes on.

// An SSE body's frames, as {id, data} (the list of chats reads its feed with it too).
export async function* frames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const frame = { id: null, data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) frame.id = line.slice(4);
        else if (line.startsWith("data: ")) frame.data += line.slice(6);
      }
      yield frame;
    }
  }
}

export class ChatTurns {
  // `url`: the chat's stream; `headers()`: its requests' headers; `onTurn(turn)`, called
  // with each announcement's data ({turn, generationId, userMessage}); `onDecision()`,
  // called when an answer's approval was decided.
  constructor(url, headers, onTurn, onDecision) {
    this.url = url;
    this.headers = headers;
    this.onTurn = onTurn;
    this.onDecision = onDecision;
    this.controller = new AbortController();
    this.lastId = null;
    this.done = this.run();
  }

  async run() {
    const { signal } = this.controller;
    while (!signal.aborted) {
      try {
        const headers = { ...(await this.headers()), ...(this.lastId ? { "Last-Event-ID": this.lastId } : {}) };
        const res = await fetch(this.url, { headers, signal });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        for await (const frame of frames(res.body)) {
          if (frame.id) this.lastId = frame.id;
          if (frame.data.startsWith('{"type":"data-chat-turn"')) this.onTurn(JSON.parse(frame.data).data);
          else if (frame.data.startsWith('{"type":"data-approval"')) this.onDecision();
        }
      } catch {
        // dropped, refused or closed: try again shortly (unless the page left the chat)
      }
      if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  close() {
    this.controller.abort();
    return this.done;
  }
}
