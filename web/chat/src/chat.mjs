// One chat as the AI SDK holds it in a browser: the SDK's own AbstractChat (what useChat
// wraps in React) over a tiny observable state, and the client package's
// BroadcasterChatTransport: it sends each submit with an Idempotency-Key of its own, finishes
// an answer whose connection drops after its last event, and asks for a token again when
// one expires. Nothing here speaks the protocol itself.

import { AbstractChat, lastAssistantMessageIsCompleteWithApprovalResponses } from "ai";
import { BroadcasterChatTransport } from "@llm-stream-broadcaster/client";

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
  // A message is never changed in place here: a change is a new object in a new array, the
  // other messages kept as they were (the pane updates only the messages whose object is new).
  pushMessage(message) {
    this._messages = this._messages.concat([structuredClone(message)]); // the SDK keeps mutating its copy
    this.onChange();
  }
  popMessage() { this._messages = this._messages.slice(0, -1); this.onChange(); }
  replaceMessage(index, message) {
    this._messages = this._messages.slice();
    this._messages[index] = structuredClone(message); // the SDK keeps mutating its copy
    this.onChange();
  }
  snapshot(thing) { return structuredClone(thing); }
}

// The transport as is, plus a look at each chunk it hands the SDK: the SDK's message has
// no place for how a stream ended (`finish`, `abort` or `error`), the pane shows it.
function watched(stream, onChunk) {
  return stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        onChunk(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
}

class WatchedTransport extends BroadcasterChatTransport {
  constructor(options, onChunk) {
    super(options);
    this.onChunk = onChunk;
  }
  async sendMessages(options) {
    return watched(await super.sendMessages(options), this.onChunk);
  }
  async reconnectToStream(options) {
    const stream = await super.reconnectToStream(options);
    return stream && watched(stream, this.onChunk);
  }
}

// The transport of one pane (each pane is a tab of its own). `getToken`: the chat token,
// when the deployment wants one; `provider`: the provider or agent that answers (null:
// the deployment's default). X-Reset-Step: this SDK (ai 7) knows `reset-step`, so a step
// that a worker taking the answer over had to make again replaces the cut one instead of
// showing beside it. Closing or reloading the page aborts the pane's requests, which must
// not stop the answer: only the Stop button does (stopOnAbort: false).
export function chatTransport({ api, getToken, provider, onChunk }) {
  return new WatchedTransport(
    {
      api,
      getToken,
      headers: { "X-Reset-Step": "1" },
      body: provider ? { provider } : {},
      stopOnAbort: false,
    },
    onChunk,
  );
}

// A tool call that waits for a person is answered with addToolApprovalResponse (the
// transport's respondToApproval): a Chat that is not streaming then sends the decision by
// itself (sendAutomaticallyWhen).
export class BrowserChat extends AbstractChat {
  constructor({ id, transport, onChange }) {
    super({
      id,
      state: new ObservedState(onChange),
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
  }
}
