// The broadcaster's worker protocol (docs/worker-protocol.md), as a small client: claim a
// job of a provider (long-poll), append its UI message chunks under the lease (merged
// for a few milliseconds, one append in flight, the same batch sent again after a network
// error: the front-end recognises it), renew the lease every third of it, hand it back.
// Each answer's signals (stop, steering) reach the job through `onSignals`.

export type Chunk = { type: string; [field: string]: unknown };

export type Signals = {
  stop: boolean;
  ended: string | null;
  steer: { id: string; text: string }[];
};

export type Job = {
  generation_id: string;
  lease: string;
  lease_seconds: number;
  provider: string;
  attempt: number;
  last_event_id: number;
  request: Record<string, unknown>;
  chat_id: string | null;
  message_id: string;
  events: Chunk[];
  events_complete: boolean;
  signals: Signals;
};

/** Why a job's writer gave up: the lease is another worker's, or the generation ended. */
export class LeaseLost extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
  ) {
    super(`lease lost: ${status} ${code}`);
  }
}

const TERMINAL = new Set(["finish", "error", "abort"]);
const MAX_BATCH = 500; // the protocol takes up to 1000 events a request

export class Broadcaster {
  constructor(
    readonly base: string,
    readonly key: string | undefined,
  ) {}

  async post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    return fetch(this.base + path, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal,
    });
  }

  /** The next job of `provider`, or null when none came within the wait. */
  async claim(provider: string, waitSeconds: number, signal?: AbortSignal): Promise<Job | null> {
    const response = await this.post("/v1/worker/claim", { provider, wait_seconds: waitSeconds }, signal);
    if (response.status === 204) return null;
    if (!response.ok) throw new Error(`claim: ${response.status} ${await response.text()}`);
    return (await response.json()) as Job;
  }
}

/** One leased job: its writer and its lease. */
export class Lease {
  private seq: number;
  private pending: Chunk[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private renewing: NodeJS.Timeout;
  lost: LeaseLost | undefined;
  /** Its terminal chunk is queued: nothing more to renew or to hear (a renewal or an
   * append answered after the end saying `stop` says only that the job is over). */
  finished = false;

  constructor(
    private readonly api: Broadcaster,
    readonly job: Job,
    private readonly mergeMs: number,
    private readonly onSignals: (signals: Signals) => void,
    private readonly onLost: (lost: LeaseLost) => void,
  ) {
    this.seq = job.last_event_id;
    const every = (job.lease_seconds * 1000) / 3;
    this.renewing = setInterval(() => void this.renew(), every);
  }

  private path(action: string): string {
    return `/v1/worker/jobs/${encodeURIComponent(this.job.generation_id)}/${action}`;
  }

  /** Queue a chunk; it is appended within `mergeMs` (a terminal one at once). */
  write(chunk: Chunk): void {
    if (this.lost) return;
    this.pending.push(chunk);
    if (TERMINAL.has(chunk.type)) this.finished = true;
    if (TERMINAL.has(chunk.type) || this.pending.length >= MAX_BATCH) {
      void this.flush();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.mergeMs);
    }
  }

  /** Append what is pending; resolves once every earlier append is done. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending.splice(0);
    if (batch.length > 0) this.flushing = this.flushing.then(() => this.append(batch));
    return this.flushing;
  }

  private async append(events: Chunk[]): Promise<void> {
    for (let attempt = 0; !this.lost; attempt++) {
      let response: Response;
      try {
        response = await this.api.post(this.path("events"), {
          lease: this.job.lease,
          after: this.seq,
          events,
        });
      } catch (error) {
        if (attempt >= 5) throw error;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
        continue; // the same batch at the same seq: never written twice
      }
      const body = (await response.json()) as { last_event_id?: number; signals?: Signals; error?: string };
      if (response.ok) {
        this.seq = body.last_event_id!;
        if (!this.finished) this.onSignals(body.signals!);
        return;
      }
      this.lose(new LeaseLost(body.error ?? "refused", response.status));
      return;
    }
  }

  private async renew(): Promise<void> {
    if (this.lost || this.finished) return;
    try {
      const response = await this.api.post(this.path("lease"), { lease: this.job.lease });
      const body = (await response.json()) as { signals?: Signals; error?: string };
      if (this.finished) return;
      if (!response.ok) return this.lose(new LeaseLost(body.error ?? "refused", response.status));
      this.onSignals(body.signals!);
    } catch {
      // The front-end is unreachable: the next renewal tries again, within the lease.
    }
  }

  private lose(lost: LeaseLost): void {
    if (this.lost) return;
    this.lost = lost;
    this.pending = [];
    this.close();
    this.onLost(lost);
  }

  /** Hand the job back (this worker stops): a successor continues from the stream. */
  async release(): Promise<void> {
    if (!this.lost) await this.flush();
    this.close();
    if (this.lost) return;
    await this.api.post(this.path("release"), { lease: this.job.lease });
  }

  close(): void {
    clearInterval(this.renewing);
    clearTimeout(this.timer);
  }
}
