// Drives the broadcaster's chat routes (/v1/chat) with the Vercel AI SDK's own client code,
// as useChat does, and prints what the SDK made of them as one JSON line on stdout.
//
//   node tests/clients/aisdk/chat.mjs send|resume|reload|chat < request.json
//
// The request (JSON on stdin) holds `api` (the broadcaster's {base}/v1/chat), `chatId`, and
// `headers` (sent with every request, e.g. a chat token). Modes:
//
//   send    DefaultChatTransport.sendMessages({messages, trigger, messageId, body}), the
//           answer assembled by readUIMessageStream: what useChat's sendMessage reads.
//   resume  DefaultChatTransport.reconnectToStream(), what useChat({resume: true}) calls on
//           load: prints {"status":204,...} when it returns null, else the message.
//   reload  a page that reloads: AbstractChat holding `messages` (what the page fetched
//           from GET /v1/chat/{id}/messages) calls resumeStream(), as
//           useChat({messages, resume: true}) does on mount; prints chat.messages.
//   chat    the SDK's own AbstractChat (the class under useChat) with
//           sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls, whose
//           onToolCall answers every tool call with `toolOutput` (a client-side tool):
//           sendMessage({text}) then runs until the chat is done; prints chat.messages.
//
// Every chunk goes through the SDK's uiMessageChunkSchema (a rejected chunk, or an error
// while assembling, exits 1 with the reason on stderr). Exit status: 0 ok, 1 failure,
// 2 bad usage.

import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithToolCalls,
} from "ai";
import { assemble, failer } from "./assemble.mjs";

const fail = failer("chat.mjs");

const mode = process.argv[2];
if (!["send", "resume", "reload", "chat"].includes(mode)) {
  process.stderr.write("usage: node chat.mjs send|resume|reload|chat < request.json\n");
  process.exit(2);
}
let input = "";
for await (const bytes of process.stdin) input += bytes;
const request = JSON.parse(input);

// What came over the wire besides what the SDK makes of it: each response's status and
// headers, and whether its body ended with data: [DONE].
const responses = [];

async function watchingFetch(url, init) {
  const response = await fetch(url, init);
  const seen = {
    method: init?.method ?? "GET",
    status: response.status,
    ui_message_stream_header: response.headers.get("x-vercel-ai-ui-message-stream"),
    generation: response.headers.get("x-generation-id"),
    done: false,
  };
  responses.push(seen);
  if (!response.ok || !response.body) return response;
  const [forSdk, forUs] = response.body.tee();
  seen.rawDone = (async () => {
    const decoder = new TextDecoder();
    let raw = "";
    for await (const bytes of forUs) raw += decoder.decode(bytes, { stream: true });
    seen.done = /(^|\n)data: \[DONE\]\n\n$/.test(raw);
  })().catch(() => {});
  return new Response(forSdk, { status: response.status, headers: response.headers });
}

const transport = new DefaultChatTransport({
  api: request.api,
  headers: request.headers ?? {},
  body: request.body ?? {},
  fetch: watchingFetch,
});

async function finished() {
  await Promise.all(responses.map((r) => r.rawDone));
  return responses.map(({ rawDone, ...rest }) => rest);
}

async function send() {
  let chunks;
  try {
    chunks = await transport.sendMessages({
      chatId: request.chatId,
      messages: request.messages,
      trigger: request.trigger ?? "submit-message",
      messageId: request.messageId,
      abortSignal: undefined,
    });
  } catch (err) {
    fail(`POST ${request.api} failed`, err);
  }
  const out = await assemble(chunks, fail);
  return { ...out, responses: await finished() };
}

async function resume() {
  let chunks;
  try {
    chunks = await transport.reconnectToStream({ chatId: request.chatId });
  } catch (err) {
    fail(`GET ${request.api}/${request.chatId}/stream failed`, err);
  }
  if (chunks === null) return { status: 204, message: null, responses: await finished() };
  const out = await assemble(chunks, fail);
  return { status: 200, ...out, responses: await finished() };
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

async function reload() {
  const errors = [];
  const session = new NodeChat({
    id: request.chatId,
    messages: request.messages,
    transport,
    onError: (err) => errors.push(err.message ?? String(err)),
  });
  await session.resumeStream();
  if (errors.length) fail(`the resumed chat failed: ${errors.join("; ")}`);
  return { status: session.status, messages: session.messages, responses: await finished() };
}

async function chat() {
  const errors = [];
  const finishes = [];
  const session = new NodeChat({
    id: request.chatId,
    transport,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onError: (err) => errors.push(err.message ?? String(err)),
    onFinish: ({ isAbort, isError, finishReason }) => finishes.push({ isAbort, isError, finishReason }),
    onToolCall: ({ toolCall }) => {
      // Not awaited: the SDK's own advice inside onToolCall.
      session.addToolOutput({
        tool: toolCall.toolName,
        toolCallId: toolCall.toolCallId,
        output: request.toolOutput,
      });
    },
  });
  await session.sendMessage({ text: request.text });
  if (errors.length) fail(`the chat failed: ${errors.join("; ")}`);
  return {
    status: session.status,
    messages: session.messages,
    finishes,
    responses: await finished(),
  };
}

const timer = setTimeout(() => fail("no result within 60 s"), 60_000);
const result = await { send, resume, reload, chat }[mode]();
clearTimeout(timer);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0); // the end of a run in tests/clients/host.mjs too
