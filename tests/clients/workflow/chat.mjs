// Drives the broadcaster's chat routes (/v1/chat) with @ai-sdk/workflow's
// WorkflowChatTransport, unmodified, under the AI SDK 7's own Chat (AbstractChat, the
// class under useChat), and prints what the SDK made of them as one JSON line on stdout.
//
//   node tests/clients/workflow/chat.mjs send|reconnect|approve < request.json
//
// The request (JSON on stdin) holds `api` (the broadcaster's {base}/v1/chat) and, per
// mode:
//
//   send       {text, chatId?, body?, textFile?}: a Chat sends one message and runs until
//              it is ready (the transport reconnects by itself if the answer's
//              connection drops); prints its messages and every request the transport
//              made. With `textFile`, that file is created once the Chat shows some
//              text of the answer (the caller waits for it before it cuts the answer).
//   reconnect  {chatId, startIndex}: transport.reconnectToStream({chatId, startIndex})
//              (chatId may be a run id), read with readUIMessageStream; prints the chunks,
//              the message, the transport's warnings and the chunk count its onChatEnd
//              was told.
//   approve    {chatId, text, body?, decide: {approved, reason?}, tabs: 2}: `tabs` Chats
//              on one chat with sendAutomaticallyWhen:
//              lastAssistantMessageIsCompleteWithApprovalResponses; the first sends; the
//              others follow the answer (resumeStream, by chat id); when the first is
//              ready with a tool part in approval-requested, it answers with
//              addToolApprovalResponse; every Chat runs until ready again and the
//              answer has finished; prints each Chat's messages.
//
// Exit status: 0 ok, 1 failure (the reason on stderr), 2 bad usage.

import {
  AbstractChat,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  readUIMessageStream,
} from "ai";
import { WorkflowChatTransport } from "@ai-sdk/workflow/client";
import { writeFileSync } from "node:fs";

function fail(msg, err) {
  const detail = err ? `\n${err.name ?? "Error"}: ${err.message ?? String(err)}` : "";
  process.stderr.write(`workflow/chat.mjs: ${msg}${detail}\n`);
  process.exit(1);
}

const mode = process.argv[2];
if (!["send", "reconnect", "approve"].includes(mode)) {
  process.stderr.write("usage: node chat.mjs send|reconnect|approve < request.json\n");
  process.exit(2);
}
let input = "";
for await (const bytes of process.stdin) input += bytes;
const request = JSON.parse(input);

// Every request a transport made, with what it answered.
const requests = [];
function watching(tab) {
  return async (url, init) => {
    const seen = { tab, method: init?.method ?? "GET", url: String(url) };
    requests.push(seen);
    try {
      const response = await fetch(url, init);
      seen.status = response.status;
      seen.runId = response.headers.get("x-workflow-run-id");
      seen.chatId = response.headers.get("x-chat-id");
      seen.tailIndex = response.headers.get("x-workflow-stream-tail-index");
      return response;
    } catch (err) {
      seen.error = String(err.message ?? err);
      throw err;
    }
  };
}

class PlainState {
  constructor(messages = []) {
    this.status = "ready";
    this.error = undefined;
    this.messages = messages;
  }
  pushMessage(message) {
    this.messages = [...this.messages, message];
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

class NodeChat extends AbstractChat {
  constructor({ messages, ...options }) {
    super({ ...options, state: new PlainState(messages) });
  }
}

// What the transport warns of (its orphan-chunk filter warns when a resume landed
// mid-part) and the count of chunks it says it holds at the end (onChatEnd).
const warnings = [];
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.map(String).join(" "));
  warn(...args);
};
const ends = [];

function transport(tab) {
  return new WorkflowChatTransport({
    api: request.api,
    fetch: watching(tab),
    onChatEnd: ({ chunkIndex }) => ends.push(chunkIndex),
    maxConsecutiveErrors: 5,
    prepareSendMessagesRequest: request.body
      ? ({ messages, body }) => ({ body: { messages, ...request.body, ...body } })
      : undefined,
  });
}

async function send() {
  const errors = [];
  const finishes = [];
  const chat = new NodeChat({
    id: request.chatId ?? "unnamed",
    transport: transport(0),
    onError: (err) => errors.push(err.message ?? String(err)),
    onFinish: ({ isAbort, isError, finishReason }) => finishes.push({ isAbort, isError, finishReason }),
  });
  let told = false;
  const watch = setInterval(() => {
    const answer = chat.messages.at(-1);
    if (!told && request.textFile && answer?.role === "assistant" && answer.parts.some((p) => p.type === "text" && p.text)) {
      told = true;
      writeFileSync(request.textFile, "text\n");
    }
  }, 10);
  await chat.sendMessage({ text: request.text });
  clearInterval(watch);
  if (errors.length) fail(`the chat failed: ${errors.join("; ")}`);
  return { status: chat.status, messages: chat.messages, finishes, requests };
}

async function reconnect() {
  const chunks = [];
  let stream;
  try {
    stream = await transport(0).reconnectToStream({
      chatId: request.chatId,
      startIndex: request.startIndex,
    });
  } catch (err) {
    fail("reconnectToStream failed", err);
  }
  const counted = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let message = null;
  try {
    for await (const m of readUIMessageStream({ stream: counted, terminateOnError: true })) message = m;
  } catch (err) {
    fail("the AI SDK rejected the stream", err);
  }
  return { chunks, message, requests, warnings, ends };
}

function until(check, what, ms = 45_000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (check()) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > ms) {
        clearInterval(timer);
        reject(new Error(`${what}: not within ${ms} ms`));
      }
    }, 20);
  });
}

function pendingApproval(chat) {
  const last = chat.messages.at(-1);
  if (!last || last.role !== "assistant") return null;
  return last.parts.find((p) => p.state === "approval-requested") ?? null;
}

async function approve() {
  const errors = [];
  const finishes = [];
  const tabs = [];
  for (let i = 0; i < (request.tabs ?? 2); i++) {
    tabs.push(
      new NodeChat({
        id: request.chatId,
        transport: transport(i),
        sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
        onError: (err) => errors.push(`tab ${i}: ${err.message ?? String(err)}`),
        onFinish: ({ finishReason }) => finishes.push({ tab: i, finishReason }),
      }),
    );
  }
  const [first, ...others] = tabs;
  const sent = first.sendMessage({ text: request.text });
  // The others open the chat once its answer has begun, as a second tab would.
  await until(() => first.messages.some((m) => m.role === "assistant"), "the first tab's answer");
  for (const tab of others) tab.resumeStream();
  await sent;
  await until(() => errors.length > 0 || (first.status === "ready" && pendingApproval(first)), "the approval request");
  if (errors.length) fail(`before the decision: ${errors.join("; ")}`);
  const asked = structuredClone(pendingApproval(first));
  await until(() => others.every((t) => pendingApproval(t)), "the approval request in every tab");
  await first.addToolApprovalResponse({ id: asked.approval.id, ...request.decide });
  const state = () => JSON.stringify({ statuses: tabs.map((t) => t.status), last: tabs.map((t) => t.messages.at(-1)), requests });
  await until(
    () =>
      errors.length > 0 ||
      tabs.every(
        (t) =>
          t.status === "ready" &&
          t.messages.at(-1)?.parts.some((p) => p.type === "text" && p.state === "done" && p.text.includes(request.expectText ?? "")) &&
          !pendingApproval(t) &&
          t.messages.at(-1).parts.at(-1).type === "text",
      ),
    "every tab's continuation",
  ).catch((err) => fail(`${err.message}\n${state()}`));
  if (errors.length) fail(`after the decision: ${errors.join("; ")}`);
  return { asked, tabs: tabs.map((t) => t.messages), statuses: tabs.map((t) => t.status), finishes, requests };
}

const timer = setTimeout(() => fail("no result within 90 s"), 90_000);
let result;
try {
  result = await { send, reconnect, approve }[mode]();
} catch (err) {
  fail(`${mode} failed`, err);
}
clearTimeout(timer);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
