// One request that is not a stream (a stop, a decision, a page of history): the app's
// headers and token, a second try with a fresh token after a 401, the error body as a
// BroadcasterError.

import { Auth, type AuthOptions } from "./auth.js";
import { errorOf } from "./errors.js";

/** `fetch` with the headers and token of `options`; a 401 asks for a new token once. */
export async function request(
  url: string,
  init: RequestInit & { headers?: Record<string, string> },
  options: AuthOptions & { fetch?: typeof fetch },
  chatId?: string,
): Promise<Response> {
  const auth = new Auth(options, chatId);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  for (let attempt = 0; ; attempt++) {
    const response = await doFetch(url, { ...init, headers: await auth.headers(init.headers) });
    if (response.status !== 401 || !auth.refreshable || attempt > 0) return response;
    await response.body?.cancel().catch(() => {});
    auth.expire();
  }
}

/** The JSON of a response that must succeed, else its error. */
export async function json<T>(response: Response, url: string): Promise<T> {
  if (!response.ok) throw await errorOf(response, url);
  return (await response.json()) as T;
}
