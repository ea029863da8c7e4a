// One logical stream over as many HTTP responses as it takes: each response read frame by
// frame; a response that ends early (a front-end stopped, a proxy's timeout, a phone that
// slept) is followed by another that resumes after the last event id, with backoff; a
// token that expired is asked for again; an event already seen is never given twice.

import { Auth, type AuthOptions } from "./auth.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { BroadcasterError, errorOf, retryAfterMs, retryable } from "./errors.js";
import { readFrames, SSEParser } from "./sse.js";
import { onWake, pause } from "./wake.js";

/** One event of a stream: its SSE id, its type and its parsed JSON. */
export interface StreamEvent<T = Record<string, unknown>> {
  /** The SSE id: send it back as `lastEventId` to resume after this event. */
  id: string | undefined;
  type: string;
  data: T;
}

/** How a stream is followed, beside its URL. */
export interface FollowOptions extends AuthOptions {
  /** Resume after this event id (an `id` the server sent). */
  lastEventId?: string;
  /** Stops following; the iteration then ends. */
  signal?: AbortSignal;
  /** The fetch to use (the global one unless given). */
  fetch?: typeof fetch;
  /** Delays between reconnections. */
  backoff?: BackoffOptions;
  /** Failed connections in a row before giving up (no limit unless given). */
  maxAttempts?: number;
  /** Silence after which a connection is taken for dead and made again, in milliseconds
   * (45000: three of the server's keepalives). */
  idleTimeoutMs?: number;
}

/** The frame a server sends when a token ends an open response: ask for a new one. */
export const TOKEN_EXPIRED = "data-token-expired";
const DONE = "[DONE]";
const WAKE_STALE_MS = 20_000;

/** What differs between the streams followed this way. */
export interface Plan {
  /** The request of try `attempt` (0: the first), resuming after `lastEventId`; `resend`:
   * the last request sent again, with the token it carried. */
  request(attempt: number, lastEventId: string | undefined): { url: string; init?: RequestInit; resend?: boolean };
  /** Told of each 200 response before it is read. */
  opened?(response: Response): void;
  /** Whether the event ends the stream. */
  terminal(event: StreamEvent<unknown>): boolean;
  /** Where the event stands in the stream, to drop one seen before; null: not ordered. */
  position?(event: StreamEvent<unknown>): number[] | null;
  /** Whether a refusal is worth another try (besides 408, 429 and 5xx). */
  retry?(error: BroadcasterError): boolean;
  /** The chat the requests are for, told to `getToken`. */
  chatId?: string;
}

/** The position an id such as `7.3f9c0a1b` or `3:7.3f9c0a1b` names: [7] or [3, 7]. */
export function idPosition(id: string | undefined): number[] | null {
  const m = id === undefined ? null : /^(?:(\d+):)?(\d+)(?:\.[A-Za-z0-9_-]*)?$/.exec(id.trim());
  if (!m) return null;
  return m[1] === undefined ? [Number(m[2])] : [Number(m[1]), Number(m[2])];
}

function after(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return false;
}

function parseData(data: string): { type: string; value: unknown } | null {
  try {
    const value: unknown = JSON.parse(data);
    const type = value !== null && typeof value === "object" ? (value as { type?: unknown }).type : undefined;
    return { type: typeof type === "string" ? type : "", value };
  } catch {
    return null;
  }
}

/** Why a response stopped being read. */
type Outcome = "ended" | "again" | "refresh";

/** The events of `plan`'s stream, across responses, each once. */
export async function* connect(plan: Plan, options: FollowOptions = {}): AsyncGenerator<StreamEvent<unknown>> {
  const auth = new Auth(options, plan.chatId);
  const backoff = new Backoff(options.backoff);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const idleMs = options.idleTimeoutMs ?? 45_000;
  let lastId = options.lastEventId;
  let lastPos = idPosition(lastId);
  let refreshed = false; // a refresh since the last good response: a second 401 is final
  let failures = 0;
  let attempt = 0;
  let retryMs: number | undefined;
  let wake = new AbortController();
  let current: AbortController | null = null;
  let lastBytes = Date.now();
  let woken = false; // the connection was cut by a wake: made again at once
  const stopWake = onWake(() => {
    wake.abort();
    if (current && Date.now() - lastBytes > WAKE_STALE_MS) {
      woken = true;
      current.abort(new Error("woken"));
    }
  });
  try {
    while (!options.signal?.aborted) {
      const attemptController = new AbortController();
      current = attemptController;
      const signals = [attemptController.signal, ...(options.signal ? [options.signal] : [])];
      const { url, init = {}, resend = false } = plan.request(attempt++, lastId);
      let outcome: Outcome = "again";
      let floorMs = 0;
      let failure: unknown;
      const watchdog = setInterval(() => {
        if (Date.now() - lastBytes > idleMs) attemptController.abort(new Error("idle"));
      }, Math.min(idleMs, 5000));
      try {
        const extra: Record<string, string> = { accept: "text/event-stream" };
        if (lastId !== undefined) extra["last-event-id"] = lastId;
        const headers = await auth.headers({ ...(init.headers as Record<string, string> | undefined), ...extra }, resend);
        lastBytes = Date.now();
        const response = await doFetch(url, { ...init, headers, signal: AbortSignal.any(signals) });
        if (response.status === 204) return;
        if (response.status === 401 && auth.refreshable && !refreshed) {
          await response.body?.cancel().catch(() => {});
          refreshed = true;
          auth.expire();
          continue;
        }
        if (!response.ok || !response.body) {
          const error = await errorOf(response, url);
          if (!retryable(response.status) && !plan.retry?.(error)) throw error;
          failure = error;
          floorMs = retryAfterMs(response) ?? 0;
        } else {
          plan.opened?.(response);
          refreshed = false;
          const parser = new SSEParser();
          outcome = "again";
          for await (const frame of readFrames(response.body, parser, () => (lastBytes = Date.now()))) {
            if (frame.data === DONE) {
              outcome = "ended";
              break;
            }
            const parsed = parseData(frame.data);
            if (parsed === null) continue;
            if (parsed.type === TOKEN_EXPIRED || frame.event === TOKEN_EXPIRED) {
              outcome = "refresh";
              break;
            }
            const event: StreamEvent<unknown> = { id: frame.id, type: parsed.type, data: parsed.value };
            const pos = plan.position ? plan.position(event) : idPosition(frame.id);
            if (pos !== null && lastPos !== null && !after(pos, lastPos)) continue;
            if (frame.id !== undefined) lastId = frame.id;
            if (pos !== null) lastPos = pos;
            failures = 0;
            backoff.reset();
            yield event;
            if (plan.terminal(event)) return;
          }
          retryMs = parser.retry;
        }
      } catch (err) {
        if (options.signal?.aborted) return;
        if (err instanceof BroadcasterError) throw err;
        failure = err;
      } finally {
        clearInterval(watchdog);
        current = null;
        attemptController.abort();
      }
      if (outcome === "ended") return;
      if (outcome === "refresh") auth.expire();
      if (outcome === "refresh" || woken) {
        woken = false;
        continue;
      }
      failures += 1;
      if (options.maxAttempts !== undefined && failures >= options.maxAttempts) {
        throw failure ?? new Error(`the stream at ${url} ended ${failures} times without its end`);
      }
      wake = new AbortController();
      await pause(backoff.next(retryMs, floorMs), options.signal, wake.signal);
    }
  } finally {
    stopWake();
    current?.abort();
  }
}
