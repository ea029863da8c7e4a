// followEvents: a dashboard of many streams on one connection (`GET /v1/events`).

import { connect, type FollowOptions } from "./connect.js";
import { TERMINAL_TYPES } from "./stream.js";

/** What a dashboard follows: streams by id, every stream under a prefix, a chat's answers. */
export interface EventsSelection {
  /** Stream ids to follow (those not created yet too). */
  streams?: string[];
  /** Every stream whose id starts with one of these, those created later too. */
  prefix?: string | string[];
  /** The answers of these chats. */
  chats?: string[];
}

/** One event of one of the followed streams. */
export interface DashboardEvent<T = Record<string, unknown>> {
  /** The connection's resume point after this event: pass it as `lastEventId`. */
  id: string | undefined;
  /** The stream the event belongs to, and its seq there. */
  stream: string;
  seq: number;
  type: string;
  /** The event object itself. */
  data: T;
}

interface Frame {
  stream?: unknown;
  seq?: unknown;
  event?: unknown;
}

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** The URL of `GET /v1/events` for `selection`, at `url` (the route's own address). */
export function eventsUrl(url: string, selection: EventsSelection): string {
  const target = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  for (const id of selection.streams ?? []) target.searchParams.append("stream", id);
  for (const p of list(selection.prefix)) target.searchParams.append("prefix", p);
  for (const id of selection.chats ?? []) target.searchParams.append("chat", id);
  return target.toString();
}

/**
 * Many streams on one connection (`url`: the front-end's `…/v1/events`): the named
 * streams, every stream under a prefix (those created while it runs too), a chat's
 * answers. Each event once, in each stream's order, resumed after a dropped connection by
 * one `Last-Event-ID` that holds every stream's position. Ends once every named stream has
 * ended, when there is no prefix and no chat; else runs until `signal` aborts.
 *
 * ```ts
 * for await (const e of followEvents(`${base}/v1/events`, { prefix: "job-" })) {
 *   rows.get(e.stream)?.update(e.type, e.data);
 * }
 * ```
 */
export async function* followEvents<T = Record<string, unknown>>(
  url: string,
  selection: EventsSelection,
  options: FollowOptions = {},
): AsyncGenerator<DashboardEvent<T>> {
  const target = eventsUrl(url, selection);
  const named = new Set(selection.streams ?? []);
  const open = named.size > 0 && list(selection.prefix).length === 0 && (selection.chats ?? []).length === 0;
  const seqs = new Map<string, number>(); // each stream's last seq given: none twice
  const events = connect(
    {
      request: () => ({ url: target }),
      terminal: () => false,
      position: () => null,
    },
    options,
  );
  for await (const event of events) {
    const frame = event.data as Frame;
    if (typeof frame?.stream !== "string" || typeof frame.seq !== "number") continue;
    const inner = frame.event as { type?: unknown } | undefined;
    const type = typeof inner?.type === "string" ? inner.type : event.type;
    if ((seqs.get(frame.stream) ?? 0) >= frame.seq) continue;
    seqs.set(frame.stream, frame.seq);
    yield { id: event.id, stream: frame.stream, seq: frame.seq, type, data: inner as T };
    if (open && TERMINAL_TYPES.has(type) && named.delete(frame.stream) && named.size === 0) return;
  }
}
