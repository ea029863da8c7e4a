// Following a chat, not one answer: `GET {api}/{chatId}/events` carries every answer in
// turn, each opened by a transient `data-chat-turn` ({turn, generationId, userMessage}).
// An answer this tab did not start (another tab's, another device's) is handed to the AI
// SDK: its user message added to the chat, then `resumeStream()`, which the transport
// answers with the turn as this connection has it (from its `start`, then live). So is an
// answer that goes on after a decision taken elsewhere (a `data-approval`) while this tab
// shows none.

import { connect, type FollowOptions, type StreamEvent } from "../connect.js";
import { TERMINAL_TYPES } from "../stream.js";
import type { MessageLike } from "./approval.js";
import { AnswerRecord, type Chunk } from "./replay.js";
import type { ChatState } from "./transport.js";

/** What the follower needs of its transport. */
export interface ChatSide {
  state(chatId: string): ChatState;
  chatUrl(chatId: string, path?: string): string;
}

/** What a followed chat needs of the app's chat: what `useChat` returns has both. */
export interface FollowTarget<M extends MessageLike = MessageLike> {
  resumeStream(): unknown;
  setMessages(update: (messages: M[]) => M[]): void;
}

interface TurnData {
  turn?: number;
  generationId?: string;
  userMessage?: MessageLike | null;
}

/** One answer on the chat's stream, as far as it went, and the streams reading it live. */
class Turn {
  readonly record: AnswerRecord;
  readonly readers = new Set<ReadableStreamDefaultController<Chunk>>();
  handed = false;

  constructor(
    readonly generation: string,
    readonly userMessage: MessageLike | null,
    readonly first: boolean,
  ) {
    this.record = new AnswerRecord(generation);
  }

  add(chunk: Chunk, id: string | undefined): void {
    this.record.add(chunk, id);
    for (const reader of this.readers) reader.enqueue(chunk);
    if (TERMINAL_TYPES.has(chunk.type)) {
      this.record.ended = true;
      for (const reader of this.readers) reader.close();
      this.readers.clear();
    }
  }

  /** The turn from its start, then live until its end. */
  stream(): ReadableStream<Chunk> {
    let mine: ReadableStreamDefaultController<Chunk> | null = null;
    return new ReadableStream<Chunk>({
      start: (controller) => {
        for (const chunk of this.record.chunks) controller.enqueue(chunk);
        if (this.record.ended) controller.close();
        else this.readers.add((mine = controller));
      },
      cancel: () => {
        if (mine) this.readers.delete(mine);
      },
    });
  }
}

export class ChatFollower<M extends MessageLike> {
  private readonly controller = new AbortController();
  private readonly state: ChatState;
  private current: Turn | null = null;
  private waiting: Turn | null = null; // a turn to hand over once the SDK is idle

  constructor(
    private readonly transport: ChatSide,
    private readonly chatId: string,
    private readonly target: FollowTarget<M>,
    options: FollowOptions,
  ) {
    this.state = transport.state(chatId);
    this.state.idle = () => this.handOver();
    this.run(options).catch(() => {});
  }

  close(): void {
    this.controller.abort();
    if (this.state.idle) this.state.idle = null;
  }

  private async run(options: FollowOptions): Promise<void> {
    const events = connect(
      { chatId: this.chatId, request: () => ({ url: this.transport.chatUrl(this.chatId, "/events") }), terminal: () => false },
      { ...options, lastEventId: undefined, signal: this.controller.signal },
    );
    let first = true;
    for await (const event of events) {
      if (event.type === "data-chat-turn") {
        await this.announced(event, first);
        first = false;
      } else if (this.current) {
        this.current.add(event.data as Chunk, event.id);
        if (event.type === "data-approval") this.decided(this.current);
      }
    }
  }

  /** A turn begins: handed to the SDK unless this tab streams it already. */
  private async announced(event: StreamEvent<unknown>, first: boolean): Promise<void> {
    const data = ((event.data as { data?: TurnData }).data ?? {}) as TurnData;
    const turn = new Turn(String(data.generationId ?? ""), data.userMessage ?? null, first);
    this.current = turn;
    while (this.state.sending) await this.state.sending; // a submit of ours: its headers name it
    if (this.state.own.has(turn.generation)) return;
    if (first && !this.unknownMessage(turn)) return; // the chat as it was when this tab opened it
    this.waiting = turn;
    this.handOver();
  }

  /** A decision on an approval: the answer goes on; a tab that shows nothing of it (its own
   * answer ended at the wait) follows it again. */
  private decided(turn: Turn): void {
    if (turn.handed && this.state.open > 0) return;
    this.waiting = turn;
    this.handOver();
  }

  /** Whether the turn's user message is one the chat does not hold yet. */
  private unknownMessage(turn: Turn): boolean {
    const id = turn.userMessage?.id;
    if (id === undefined) return false;
    let unknown = false;
    this.target.setMessages((messages) => {
      unknown = !messages.some((m) => m.id === id);
      return messages;
    });
    return unknown;
  }

  /** The waiting turn, handed to the SDK once nothing streams into it. */
  private handOver(): void {
    const turn = this.waiting;
    if (!turn || this.state.open > 0 || this.state.sending || this.controller.signal.aborted) return;
    this.waiting = null;
    turn.handed = true;
    const message = turn.userMessage as M | null;
    if (message) this.target.setMessages((messages) => (messages.some((m) => m.id === message.id) ? messages : [...messages, message]));
    this.state.injected = () => turn.stream();
    Promise.resolve(this.target.resumeStream()).catch(() => {});
  }
}
