// An agent written with the Vercel AI SDK, served by the broadcaster as a provider of its
// own: a chat sent with `provider: "ts-agent"` (POST /v1/chat) is answered here, through
// the worker protocol (docs/worker-protocol.md), with every guarantee of the chat API:
// resume, many tabs, stop (the model call is aborted), takeover after a crash.
//
//   BROADCASTER_URL=http://127.0.0.1:8000 OPENAI_BASE_URL=http://127.0.0.1:11434/v1 \
//     npx tsx agent.ts
//
// Settings (environment): BROADCASTER_URL; BROADCASTER_WORKER_KEY (an API key with the
// `work` right; none on a loopback dev front-end without keys); AGENT_PROVIDER (the
// provider name it serves, `ts-agent`); AGENT_CONCURRENCY (jobs at once, 2);
// AGENT_MERGE_MS (how long chunks are merged into one append, 20); the model:
// OPENAI_BASE_URL, OPENAI_API_KEY and AGENT_MODEL (any OpenAI-compatible Chat Completions
// server). It prints one JSON line per job's turn on stdout (claimed, finished, stopped,
// fenced) and hands its jobs back on SIGTERM.

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { streamText, type ModelMessage } from "ai";
import { Broadcaster, Lease, type Chunk, type Job, type LeaseLost, type Signals } from "./protocol.ts";

const env = process.env;
const api = new Broadcaster(env.BROADCASTER_URL ?? "http://127.0.0.1:8000", env.BROADCASTER_WORKER_KEY);
const providerName = env.AGENT_PROVIDER ?? "ts-agent";
const concurrency = Number(env.AGENT_CONCURRENCY ?? 2);
const mergeMs = Number(env.AGENT_MERGE_MS ?? 20);
const model = createOpenAICompatible({
  name: "local",
  baseURL: env.OPENAI_BASE_URL ?? "http://127.0.0.1:11434/v1",
  apiKey: env.OPENAI_API_KEY ?? "none",
  includeUsage: true,
}).chatModel(env.AGENT_MODEL ?? "gpt-4.1-mini");

const stopping = new AbortController();
const running = new Set<Lease>();

function say(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

type Block = { type?: string; text?: string };
type StoredMessage = { role?: string; content?: string | Block[] };

function text(content: string | Block[] | undefined): string {
  if (typeof content === "string") return content;
  return (content ?? []).flatMap((b) => (b.type === "text" && b.text ? [b.text] : [])).join("");
}

/** The stored request (Anthropic's Messages shape) as the AI SDK's model messages: the
 * text of each turn (this agent has no tools). */
function conversation(job: Job): ModelMessage[] {
  const stored = (job.request.messages ?? []) as StoredMessage[];
  const messages: ModelMessage[] = [];
  for (const m of stored) {
    const words = text(m.content);
    if (!words) continue;
    messages.push(m.role === "assistant" ? { role: "assistant", content: words } : { role: "user", content: words });
  }
  // A takeover: the answer so far goes back as the assistant's turn, to be continued.
  const sofar = job.events.flatMap((e) => (e.type === "text-delta" ? [String(e.delta ?? "")] : [])).join("");
  if (sofar) messages.push({ role: "assistant", content: sofar });
  return messages;
}

/** What a takeover closes of the earlier attempt: its open text parts and step. */
function closing(events: Chunk[]): Chunk[] {
  const open = new Set<string>();
  let step = false;
  for (const e of events) {
    if (e.type === "text-start") open.add(String(e.id));
    if (e.type === "text-end") open.delete(String(e.id));
    if (e.type === "start-step") step = true;
    if (e.type === "finish-step") step = false;
  }
  return [...[...open].map((id) => ({ type: "text-end", id })), ...(step ? [{ type: "finish-step" }] : [])];
}

async function run(job: Job): Promise<void> {
  const model_call = new AbortController();
  let why = "finished";
  const onSignals = (signals: Signals) => {
    if (signals.stop && !model_call.signal.aborted) {
      why = "stopped";
      model_call.abort();
    }
  };
  const onLost = (lost: LeaseLost) => {
    why = lost.code === "ended" ? "stopped" : "fenced";
    model_call.abort();
  };
  const lease = new Lease(api, job, mergeMs, onSignals, onLost);
  running.add(lease);
  const handBack = () => {
    why = "handed_back";
    model_call.abort();
  };
  stopping.signal.addEventListener("abort", handBack, { once: true });
  const takeover = job.events.length > 0;
  say("claimed", { generation_id: job.generation_id, attempt: job.attempt, takeover });
  try {
    onSignals(job.signals);
    for (const chunk of closing(job.events)) lease.write(chunk);
    const system = job.request.system;
    const result = streamText({
      model,
      system: typeof system === "string" ? system : text(system as Block[] | undefined) || undefined,
      messages: conversation(job),
      maxOutputTokens: Number(job.request.max_tokens ?? 1024),
      abortSignal: model_call.signal,
    });
    const stream = result.toUIMessageStream({
      generateMessageId: () => job.message_id,
      sendStart: !takeover,
      onError: (error) => (error instanceof Error ? error.message : String(error)),
    });
    for await (const chunk of stream) {
      if (model_call.signal.aborted) break;
      lease.write(chunk as Chunk);
    }
    if (why === "handed_back") {
      await lease.release();
    } else {
      await lease.flush();
      lease.close();
    }
  } catch (error) {
    if (!model_call.signal.aborted) {
      lease.write({ type: "error", errorText: error instanceof Error ? error.message : String(error) });
      await lease.flush().catch(() => {});
    } else if (why === "handed_back") {
      await lease.release().catch(() => {});
    }
    lease.close();
  } finally {
    stopping.signal.removeEventListener("abort", handBack);
    running.delete(lease);
    say(why, { generation_id: job.generation_id, lost: lease.lost?.code ?? null });
  }
}

async function loop(): Promise<void> {
  while (!stopping.signal.aborted) {
    let job: Job | null = null;
    try {
      job = await api.claim(providerName, 20, stopping.signal);
    } catch (error) {
      if (stopping.signal.aborted) return;
      say("claim_failed", { error: String(error) });
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (job) await run(job);
  }
}

process.on("SIGTERM", () => stopping.abort());
process.on("SIGINT", () => stopping.abort());
say("ready", { provider: providerName, concurrency });
await Promise.all(Array.from({ length: concurrency }, () => loop()));
say("exited");
