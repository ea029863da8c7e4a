// The project's error body, `{"error": code, "message": text, ...}`, as an Error.

/** An HTTP answer the client does not retry: its status, the body's `error` code and the body. */
export class BroadcasterError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>, url: string) {
    const code = typeof body.error === "string" ? body.error : `http_${status}`;
    const text = typeof body.message === "string" ? body.message : "";
    super(`${status} ${code}${text ? `: ${text}` : ""} (${url})`);
    this.name = "BroadcasterError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** The error a response stands for, its body read (JSON, or its text as `message`). */
export async function errorOf(response: Response, url: string): Promise<BroadcasterError> {
  const text = await response.text().catch(() => "");
  let body: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    body = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { message: text };
  } catch {
    body = { message: text.slice(0, 500) };
  }
  return new BroadcasterError(response.status, body, url);
}

/** Statuses worth another try later: busy, rate limited, unavailable, a proxy's. */
export function retryable(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/** `Retry-After` in milliseconds (seconds or an HTTP date), else undefined. */
export function retryAfterMs(response: Response, now: number = Date.now()): number | undefined {
  const raw = response.headers.get("retry-after");
  if (!raw) return undefined;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim()) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
