// followStream: one stream's events (a generation, a job-progress feed) until its end.

import { connect, type FollowOptions, type StreamEvent } from "./connect.js";

/** The event types that end a stream. */
export const TERMINAL_TYPES: ReadonlySet<string> = new Set(["finish", "error", "abort"]);

/**
 * The events of the stream at `url` (`…/v1/streams/{id}/events`), each once and in order,
 * until its terminal event (`finish`, `error` or `abort`, which it yields last). A
 * connection that drops is made again after the last event's id, with backoff; a token
 * that expires is asked of `getToken` again. An abort of `signal` ends the iteration; a
 * refusal (403, 404, a resume point the stream does not hold) throws a `BroadcasterError`.
 *
 * ```ts
 * for await (const event of followStream(`${base}/v1/streams/${job}/events`)) {
 *   if (event.type === "data-progress") show(event.data);
 * }
 * ```
 */
export function followStream<T = Record<string, unknown>>(
  url: string,
  options: FollowOptions = {},
): AsyncIterable<StreamEvent<T>> {
  return connect(
    {
      request: () => ({ url }),
      terminal: (event) => TERMINAL_TYPES.has(event.type),
    },
    options,
  ) as AsyncIterable<StreamEvent<T>>;
}
