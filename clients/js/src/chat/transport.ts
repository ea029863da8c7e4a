// BroadcasterChatTransport: the AI SDK's ChatTransport (ai 6 and ai 7) for the chat routes
// of a broadcaster front-end. What DefaultChatTransport leaves to the app, it does: only
// the new message when the server keeps the chat; an Idempotency-Key per submit, the same
// on its retries; an answer whose connection drops goes on after its last event (on any
// front-end); a resume replays from memory and asks the server only for what is new;
// useChat's stop() also stops the model; tokens asked for per request and again when one
// expires; and, with followChat, a turn started in another tab streams into this one.

import type { AuthOptions } from "../auth.js";
import type { BackoffOptions } from "../backoff.js";
import { BroadcasterError } from "../errors.js";
import { connect, idPosition, type Plan } from "../connect.js";
import { json, request } from "../request.js";
import { TERMINAL_TYPES } from "../stream.js";
import { approvalBinding, type MessageLike } from "./approval.js";
import { deliver } from "./deliver.js";
import { ChatFollower, type FollowTarget } from "./follow.js";
import { AnswerRecord, type Chunk } from "./replay.js";

/** How the transport reaches the chat API. */
export interface BroadcasterChatTransportOptions extends AuthOptions {
  /** The chat route's URL, `…/v1/chat`. */
  api: string;
  /** Fields sent with every submit beside the message (`model`, `provider`, `multitask`…). */
  body?: Record<string, unknown> | (() => Record<string, unknown> | Promise<Record<string, unknown>>);
  /** `"server"` (the default): send only the new message, the server keeps the chat (a
   * server that does not is detected, and sent the whole chat); `"client"`: always the
   * whole chat, as `DefaultChatTransport` does. */
  history?: "server" | "client";
  /** Whether an abort of an answer (useChat's `stop()`) also stops the model, through the
   * chat's stop route (true unless given). */
  stopOnAbort?: boolean;
  /** The fetch to use (the global one unless given). */
  fetch?: typeof fetch;
  /** Delays between reconnections. */
  backoff?: BackoffOptions;
  /** Silence after which a connection is made again, in milliseconds (45000). */
  idleTimeoutMs?: number;
}

/** What the AI SDK passes to `sendMessages`. */
export interface SendMessagesOptions<M extends MessageLike = MessageLike> {
  trigger: "submit-message" | "regenerate-message";
  chatId: string;
  messageId: string | undefined;
  messages: M[];
  abortSignal: AbortSignal | undefined;
  headers?: Record<string, string> | Headers;
  body?: object;
  metadata?: unknown;
}

/** What the AI SDK passes to `reconnectToStream`. */
export interface ReconnectToStreamOptions {
  chatId: string;
  abortSignal?: AbortSignal;
  headers?: Record<string, string> | Headers;
  body?: object;
  metadata?: unknown;
}

/** A page of a chat's history (`GET /v1/chat/{id}/messages`). */
export interface MessagesPage<M = MessageLike> {
  messages: M[];
  /** What to pass as `before` for the page before this one; null: this page starts the chat. */
  older: string | null;
  /** The latest answer's status (`running`, `waiting`, `completed`…); null: no such chat. */
  status: string | null;
  /** The latest answer's generation; null: none. */
  generationId: string | null;
}

/** What `respondToApproval` needs of a chat: what `useChat` returns, or an AI SDK `Chat`. */
export interface ApprovingChat<M extends MessageLike = MessageLike> {
  id: string;
  status: string;
  messages: M[];
  addToolApprovalResponse(response: { id: string; approved: boolean; reason?: string }): unknown;
}

/** A stream's chunks, typed loosely: each SDK version names its own chunk union. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type SDKStream = ReadableStream<any>;

/** Each chat's state in this transport. */
export class ChatState {
  /** The latest answer handed to the SDK, as far as it went. */
  answer: AnswerRecord | null = null;
  /** Streams open to the SDK. */
  open = 0;
  /** A submit whose answer has not begun (its headers not in). */
  sending: Promise<void> | null = null;
  /** Generations this transport streamed to the SDK. */
  readonly own = new Set<string>();
  /** Calls made, to tell a resume replaced by another from a stop. */
  calls = 0;
  /** The stream the follower has the SDK resume into, next. */
  injected: (() => SDKStream) | null = null;
  /** Told when the last open stream closes. */
  idle: (() => void) | null = null;
}

function headerRecord(headers: Record<string, string> | Headers | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers) new Headers(headers).forEach((value, name) => (out[name] = value));
  return out;
}

function parseRun(value: string | null): { id: string; base: number } | null {
  const m = value === null ? null : /^[A-Za-z0-9_-]{1,64}~[A-Za-z0-9_-]{1,64}~(\d{1,12})$/.exec(value);
  return m ? { id: value as string, base: Number(m[1]) } : null;
}

/** Whether a 422 says the server wants the whole chat: `messages` missing, or `message` a
 * field it does not know; not a message it found wrong (its `loc` goes inside it). */
function wantsWholeChat(error: unknown): boolean {
  if (!(error instanceof BroadcasterError) || error.status !== 422) return false;
  const details = Array.isArray(error.body.details) ? (error.body.details as Array<{ loc?: unknown; msg?: unknown }>) : [];
  return details.some((d) => {
    const loc = Array.isArray(d.loc) ? d.loc.filter((part) => part !== "body") : [];
    return loc.length === 1 && (loc[0] === "messages" || loc[0] === "message") && /required|extra|not permitted/i.test(String(d.msg));
  });
}

function newKey(): string {
  return globalThis.crypto.randomUUID();
}

/**
 * The AI SDK's `ChatTransport` for a broadcaster's chat routes.
 *
 * ```ts
 * const transport = new BroadcasterChatTransport({ api: `${base}/v1/chat`, getToken });
 * const chat = useChat({ id, transport, resume: true });
 * ```
 */
export class BroadcasterChatTransport<M extends MessageLike = MessageLike> {
  /** Every resume this transport makes gives the answer from its `start` (from memory, or
   * the server's replay): the SDK rebuilds the message from it (ai 6 reads this). */
  readonly resumeStreamIsReplay = true;
  private readonly options: BroadcasterChatTransportOptions;
  private history: "server" | "client";
  private readonly chats = new Map<string, ChatState>();

  constructor(options: BroadcasterChatTransportOptions) {
    this.options = options;
    this.history = options.history ?? "server";
  }

  /** The URL of a chat's route: `{api}/{chatId}{path}`. */
  chatUrl(chatId: string, path = ""): string {
    return `${this.options.api.replace(/\/+$/, "")}/${encodeURIComponent(chatId)}${path}`;
  }

  /** The transport's state of one chat. */
  state(chatId: string): ChatState {
    let found = this.chats.get(chatId);
    if (!found) this.chats.set(chatId, (found = new ChatState()));
    return found;
  }

  /** Submits the chat's new message (or a regenerate, or a decision) and streams the answer. */
  async sendMessages(options: SendMessagesOptions<M>): Promise<SDKStream> {
    const { chatId } = options;
    const state = this.state(chatId);
    state.calls += 1;
    let settle!: () => void;
    const sending = new Promise<void>((resolve) => (settle = resolve));
    state.sending = sending;
    const done = () => {
      settle();
      if (state.sending === sending) state.sending = null;
    };
    try {
      const extra = await this.body();
      const key = newKey();
      for (;;) {
        const history = this.history;
        const body = JSON.stringify({
          ...extra,
          ...(options.body ?? {}),
          id: chatId,
          ...(history === "server" ? { message: options.messages[options.messages.length - 1] } : { messages: options.messages }),
          trigger: options.trigger,
          ...(options.messageId !== undefined ? { messageId: options.messageId } : {}),
        });
        const headers = { ...headerRecord(options.headers), "content-type": "application/json", "idempotency-key": key };
        try {
          const post = { url: this.options.api, init: { method: "POST", body, headers } };
          const stream = await this.answer(chatId, options.abortSignal, { post }, done);
          if (stream === null) throw new Error(`POST ${this.options.api} answered no stream`);
          return stream;
        } catch (err) {
          if (history === "server" && wantsWholeChat(err)) {
            this.history = "client";
            continue;
          }
          throw err;
        }
      }
    } finally {
      done();
    }
  }

  /** Resumes the chat's running answer: the one the follower announced, else from memory
   * and after the last event seen, else the server's replay from its start; null when no
   * answer runs. */
  async reconnectToStream(options: ReconnectToStreamOptions): Promise<SDKStream | null> {
    const { chatId } = options;
    const state = this.state(chatId);
    state.calls += 1;
    const injected = state.injected;
    if (injected) {
      state.injected = null;
      return this.watch(chatId, injected(), options.abortSignal);
    }
    const kept = state.answer;
    const resumeFrom = kept && !kept.ended && kept.replayable ? kept : null;
    return this.answer(chatId, options.abortSignal, { from: resumeFrom });
  }

  /** Stops the chat's running answer (`POST {api}/{chatId}/stop`): every tab sees it end
   * with `abort`. False when nothing ran. */
  async stop(chatId: string): Promise<boolean> {
    const url = this.chatUrl(chatId, "/stop");
    const response = await request(url, { method: "POST" }, this.options, chatId);
    if (response.status === 404 || response.status === 409) {
      await response.body?.cancel().catch(() => {});
      return false;
    }
    await json(response, url);
    return true;
  }

  /** A page of the chat's history, newest first: the newest `limit` messages before
   * message `before` (none: the newest of the chat), oldest first. */
  async loadMessages(chatId: string, page: { limit?: number; before?: string | null } = {}): Promise<MessagesPage<M>> {
    const query = new URLSearchParams();
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    if (page.before) query.set("before", page.before);
    const url = this.chatUrl(chatId, `/messages${query.size ? `?${query}` : ""}`);
    const response = await request(url, { method: "GET" }, this.options, chatId);
    if (response.status === 404) {
      await response.body?.cancel().catch(() => {});
      return { messages: [], older: null, status: null, generationId: null };
    }
    const body = await json<{ messages: M[]; older?: string | null; status?: string; generation_id?: string }>(response, url);
    return {
      messages: body.messages,
      older: body.older ?? null,
      status: body.status ?? null,
      generationId: body.generation_id ?? null,
    };
  }

  /**
   * A person's decision on a tool call the answer waits on. It goes into the chat's
   * message (`addToolApprovalResponse`); a chat that is not streaming sends it by itself
   * (with `sendAutomaticallyWhen`), one that follows the answer posts it to the chat's
   * approvals route, bound to the call and the hash of its input.
   */
  async respondToApproval(
    chat: ApprovingChat<M>,
    decision: { id: string; approved: boolean; reason?: string },
  ): Promise<void> {
    const following = chat.status === "streaming" || chat.status === "submitted";
    const binding = await approvalBinding(chat.messages, decision.id);
    await chat.addToolApprovalResponse(decision);
    if (!following) return;
    const url = this.chatUrl(chat.id, "/approvals");
    const body = {
      approvalId: decision.id,
      approved: decision.approved,
      ...(decision.reason !== undefined ? { reason: decision.reason } : {}),
      ...(binding ?? {}),
    };
    const init = { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
    await json(await request(url, init, this.options, chat.id), url);
  }

  /**
   * Follows the chat (`GET {api}/{chatId}/events`): a turn started anywhere else (another
   * tab, another device) streams into `target` (what `useChat` returns: its
   * `resumeStream` and `setMessages`), as does an answer going on after a decision taken
   * elsewhere. Returns what stops following.
   */
  followChat<T extends MessageLike = M>(chatId: string, target: FollowTarget<T>): () => void {
    const follower = new ChatFollower<T>(this, chatId, target, this.options);
    return () => follower.close();
  }

  /** The fields every submit carries. */
  private async body(): Promise<Record<string, unknown>> {
    const body = this.options.body;
    return typeof body === "function" ? await body() : (body ?? {});
  }

  /** An answer's stream: a submit's (`post`), else a resume of the chat's: `from` a kept
   * record (replayed from memory, then after its last event), else from the start. */
  private async answer(
    chatId: string,
    signal: AbortSignal | undefined,
    how: { post?: { url: string; init: RequestInit }; from?: AnswerRecord | null },
    begun?: () => void,
  ): Promise<SDKStream | null> {
    const state = this.state(chatId);
    let run: { id: string; base: number } | null = null;
    let answered = false; // a 200 came: the submit is never sent again
    const plan: Plan = {
      chatId,
      request: (attempt, lastId) => {
        // Until its answer has begun, a submit is sent again as it was (key and token: a
        // retry the server took already answers that one's stream).
        if (how.post && !answered) return { ...how.post, resend: attempt > 0 };
        const seq = idPosition(lastId)?.[0];
        // A submit's answer resumes as the same run: bound to its generation, ending where
        // the submit's own answer would (at a wait for a person).
        if (run) return { url: this.chatUrl(run.id, `/stream?startIndex=${seq === undefined ? 0 : seq - run.base}`) };
        return { url: this.chatUrl(chatId, "/stream") };
      },
      opened: (response) => {
        const generation = response.headers.get("x-generation-id");
        if (generation) state.own.add(generation);
        if (how.post && !answered) run = parseRun(response.headers.get("x-workflow-run-id"));
        answered = true;
        begun?.();
      },
      terminal: (event) => TERMINAL_TYPES.has(event.type),
      retry: (error) => error.status === 409 && error.code === "idempotency_in_progress",
    };
    const from = how.from ?? null;
    const events = connect(plan, { ...this.options, lastEventId: from?.lastEventId, signal });
    const record = from ?? new AnswerRecord(null);
    state.open += 1;
    const forget = this.onAbort(chatId, record, signal);
    let stream: SDKStream | null;
    try {
      stream = await deliver(events, record, from ? [...from.chunks] : [], () => this.closed(state));
    } catch (err) {
      forget(); // a refused request started nothing to stop
      throw err;
    }
    if (stream === null) forget();
    else state.answer = record;
    return stream;
  }

  /** A stream the follower made, counted as open while the SDK reads it. */
  private watch(chatId: string, stream: SDKStream, signal: AbortSignal | undefined): SDKStream {
    const state = this.state(chatId);
    state.open += 1;
    let closed = false;
    const close = () => {
      if (!closed) {
        closed = true;
        this.closed(state);
      }
    };
    const record = new AnswerRecord(null);
    this.onAbort(chatId, record, signal);
    const reader = stream.getReader();
    signal?.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
    return new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) {
          close();
          controller.close();
          return;
        }
        if (TERMINAL_TYPES.has((value as Chunk).type)) record.ended = true;
        controller.enqueue(value);
      },
      cancel() {
        close();
        return reader.cancel();
      },
    });
  }

  private closed(state: ChatState): void {
    state.open = Math.max(0, state.open - 1);
    if (state.open === 0) state.idle?.();
  }

  /** useChat's stop() aborts the answer's request: the model is stopped too, unless the
   * abort only made way for another request of the chat (a resume replacing a resume). */
  private onAbort(chatId: string, record: AnswerRecord, signal: AbortSignal | undefined): () => void {
    if (!signal || this.options.stopOnAbort === false) return () => {};
    const state = this.state(chatId);
    const aborted = () => {
      const calls = state.calls;
      setTimeout(() => {
        if (state.calls === calls && !record.ended) this.stop(chatId).catch(() => {});
      }, 0);
    };
    signal.addEventListener("abort", aborted, { once: true });
    return () => signal.removeEventListener("abort", aborted);
  }
}
