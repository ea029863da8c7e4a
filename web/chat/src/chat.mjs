// One chat as the AI SDK holds it in a browser: the SDK's own AbstractChat (what useChat
// wraps in React) over a tiny observable state, and its DefaultChatTransport pointed at
// the broadcaster's chat API. Nothing here speaks the protocol itself.

import { AbstractChat, DefaultChatTransport } from "ai";

// The ChatState the SDK asks for: plain fields whose every change calls `onChange`.
class ObservedState {
  constructor(onChange) {
    this._status = "ready";
    this._error = undefined;
    this._messages = [];
    this.onChange = onChange;
  }
  get status() { return this._status; }
  set status(s) { this._status = s; this.onChange(); }
  get error() { return this._error; }
  set error(e) { this._error = e; this.onChange(); }
  get messages() { return this._messages; }
  set messages(m) { this._messages = m; this.onChange(); }
  pushMessage(message) { this._messages = this._messages.concat([message]); this.onChange(); }
  popMessage() { this._messages = this._messages.slice(0, -1); this.onChange(); }
  replaceMessage(index, message) {
    this._messages = this._messages.slice();
    this._messages[index] = structuredClone(message); // the SDK keeps mutating its copy
    this.onChange();
  }
  snapshot(thing) { return structuredClone(thing); }
}

// DefaultChatTransport as is, plus a look at each chunk it has validated: the SDK's
// message has no place for how a stream ended (`finish`, `abort` or `error`), the pane
// shows it.
class WatchedTransport extends DefaultChatTransport {
  constructor(options, onChunk) {
    super(options);
    this.onChunk = onChunk;
  }
  processResponseStream(stream) {
    const onChunk = this.onChunk;
    return super.processResponseStream(stream).pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          onChunk(chunk);
          controller.enqueue(chunk);
        },
      }),
    );
  }
}

export class BrowserChat extends AbstractChat {
  // `api`: the chat endpoint (`/v1/chat`); `headers`: a function giving the request's
  // headers (a chat token, when the deployment wants one).
  constructor({ id, api, headers, onChange, onChunk }) {
    const state = new ObservedState(onChange);
    super({ id, state, transport: new WatchedTransport({ api, headers }, onChunk) });
  }
}
