// One chat as the AI SDK holds it in a browser: the SDK's own AbstractChat (what useChat
// wraps in React) over a tiny observable state, and @ai-sdk/workflow's
// WorkflowChatTransport pointed at the broadcaster's chat API: an answer whose connection
// drops is finished by the transport itself (it reconnects with the answer's run id and
// the chunks it has). Nothing here speaks the protocol itself.

import { AbstractChat, lastAssistantMessageIsCompleteWithApprovalResponses } from "ai";
import { WorkflowChatTransport } from "@ai-sdk/workflow/client";

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

// WorkflowChatTransport as is, plus a look at each chunk it has validated: the SDK's
// message has no place for how a stream ended (`finish`, `abort` or `error`), the pane
// shows it.
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

class WatchedTransport extends WorkflowChatTransport {
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

const RESET_STEP = { "X-Reset-Step": "1" };

export class BrowserChat extends AbstractChat {
  // `api`: the chat endpoint (`/v1/chat`); `headers`: a function giving the request's
  // headers (a chat token, when the deployment wants one); `provider`: the provider or
  // agent that answers (null: the deployment's default). A tool call that waits for a
  // person is answered with addToolApprovalResponse: a Chat that is not streaming then
  // sends the decision by itself (sendAutomaticallyWhen).
  constructor({ id, api, headers, provider, onChange, onChunk }) {
    const state = new ObservedState(onChange);
    const transport = new WatchedTransport(
      {
        api,
        // The transport sends {messages, ...body}: the chat's id goes in the body.
        // Each submit carries an Idempotency-Key of its own: a retry of it answers the
        // same stream instead of starting a second answer.
        // X-Reset-Step: this SDK (ai 7) knows `reset-step`, so a step that a worker
        // taking the answer over had to make again replaces the cut one instead of
        // showing beside it.
        prepareSendMessagesRequest: async ({ messages, body }) => ({
          body: { ...body, id, messages, ...(provider ? { provider } : {}) },
          headers: { ...(await headers()), ...RESET_STEP, "Idempotency-Key": crypto.randomUUID() },
        }),
        prepareReconnectToStreamRequest: async ({ api: url }) => ({
          api: url,
          headers: { ...(await headers()), ...RESET_STEP },
        }),
      },
      onChunk,
    );
    super({
      id,
      state,
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
  }
}
