// Reads the broadcaster's AG-UI streams with AG-UI's own client code and prints what it
// got as one JSON line on stdout (driven by tests/clients/test_agui.py).
//
//   node agui.mjs read <url> [--body JSON] [--last-event-id ID] [--cut-after-content N]
//   node agui.mjs run <base> <agentId> <threadId> <messages JSON> [--resume JSON]
//                     [--stop-after-content N] [--abort-after-content N]
//
// `read` GETs <url> (POSTs --body, for /connect) and parses the body with the client's
// own SSE parser (runHttpRequest, transformHttpEventStream), every event through
// verifyEvents. With --cut-after-content N it drops the connection after the Nth
// TEXT_MESSAGE_CONTENT and prints the id of that event (what an EventSource would send as
// Last-Event-ID; the client itself ignores ids, so the raw body is teed to learn them).
//
// `run` is HttpAgent.runAgent against /v1/agui/agent/<agentId>/run (its middlewares, its
// verification, its message state), and prints the events, the agent's messages, its
// pending interrupts and the x-generation-id header. --stop-after-content N posts
// /stop/<threadId> after the Nth content event; --abort-after-content N aborts the POST.
//
// `connect` is HttpAgent.connectAgent with the connect CopilotKit's runtime client makes
// (POST /v1/agui/agent/<agentId>/connect with the agent's RunAgentInput, the answer applied
// by the client as a run's), and prints the events and the agent's messages after them:
//
//   node agui.mjs connect <base> <agentId> <threadId> [--last-event-id ID]
//
// Exit status: 0 ok, 1 the client rejected the stream or the request failed, 2 usage.

import { HttpAgent, runHttpRequest, transformHttpEventStream, verifyEvents } from "@ag-ui/client";

function usage(msg) {
  process.stderr.write(`agui.mjs: ${msg}\n`);
  process.exit(2);
}

function option(args, name) {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = args[at + 1];
  args.splice(at, 2);
  return value;
}

function fail(err) {
  process.stderr.write(`agui.mjs: ${err?.stack || err}\n`);
  process.exit(1);
}

// The ids of the body's data frames, in order (an id-less frame keeps the last id, as an
// EventSource's lastEventId does).
function idTee(response, ids) {
  let buffer = "";
  let last = null;
  const decoder = new TextDecoder();
  const tee = new TransformStream({
    transform(chunk, controller) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let hasData = false;
        for (const line of frame.split("\n")) {
          if (line.startsWith("id: ")) last = line.slice(4);
          if (line.startsWith("data:")) hasData = true;
        }
        if (hasData) ids.push(last);
      }
      controller.enqueue(chunk);
    },
  });
  if (!response.body) return response;
  return new Response(response.body.pipeThrough(tee), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

async function read(args) {
  const url = args.shift();
  if (!url) usage("read needs a url");
  const body = option(args, "--body");
  const lastEventId = option(args, "--last-event-id");
  const cutAfter = Number(option(args, "--cut-after-content") ?? 0);
  const headers = { accept: "text/event-stream" };
  if (lastEventId) headers["last-event-id"] = lastEventId;
  if (body) headers["content-type"] = "application/json";
  const abort = new AbortController();
  const ids = [];
  let status = 0;
  let generation = null;
  const fetchResponse = async () => {
    const response = await fetch(url, {
      method: body ? "POST" : "GET",
      headers,
      body,
      signal: abort.signal,
    });
    status = response.status;
    generation = response.headers.get("x-generation-id");
    return idTee(response, ids);
  };
  const events = [];
  let contents = 0;
  let cutId = null;
  await new Promise((resolve, reject) => {
    const sub = transformHttpEventStream(runHttpRequest(fetchResponse))
      .pipe(verifyEvents(false))
      .subscribe({
        next(event) {
          events.push(event);
          if (event.type === "TEXT_MESSAGE_CONTENT") contents += 1;
          if (cutAfter && contents === cutAfter && cutId === null) {
            cutId = ids[events.length - 1];
            sub?.unsubscribe();
            abort.abort();
            resolve();
          }
        },
        error: reject,
        complete: resolve,
      });
  });
  return { status, generation, events, ids: ids.slice(0, events.length), cutId };
}

async function run(args) {
  const [base, agentId, threadId, messagesJson] = args.splice(0, 4);
  if (!messagesJson) usage("run needs <base> <agentId> <threadId> <messages JSON>");
  const resume = option(args, "--resume");
  const stopAfter = Number(option(args, "--stop-after-content") ?? 0);
  const abortAfter = Number(option(args, "--abort-after-content") ?? 0);
  let generation = null;
  let status = 0;
  const agent = new HttpAgent({
    url: `${base}/v1/agui/agent/${agentId}/run`,
    threadId,
    initialMessages: JSON.parse(messagesJson),
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      status = response.status;
      generation = response.headers.get("x-generation-id");
      return response;
    },
  });
  const events = [];
  let contents = 0;
  let stopped = null;
  const subscriber = {
    onEvent({ event }) {
      events.push(structuredClone(event)); // the client grows a snapshot's messages later
      if (event.type !== "TEXT_MESSAGE_CONTENT") return;
      contents += 1;
      if (stopAfter && contents === stopAfter) {
        stopped = fetch(`${base}/v1/agui/agent/${agentId}/stop/${threadId}`, { method: "POST" })
          .then((r) => r.status);
      }
      if (abortAfter && contents === abortAfter) agent.abortRun();
    },
  };
  const params = { runId: `run-${Date.now()}` };
  if (resume) params.resume = JSON.parse(resume);
  let result;
  try {
    result = await agent.runAgent(params, subscriber);
  } catch (err) {
    if (!abortAfter) throw err;
  }
  return {
    status,
    generation,
    events,
    newMessages: result?.newMessages ?? null,
    messages: agent.messages,
    pendingInterrupts: agent.pendingInterrupts,
    stopStatus: stopped ? await stopped : null,
  };
}

// What CopilotKit's runtime agent does for connect: the same request as a run, to /connect.
class ConnectingAgent extends HttpAgent {
  constructor(config) {
    super(config);
    this.connectUrl = config.connectUrl;
  }

  connect(input) {
    const init = this.requestInit(input);
    return transformHttpEventStream(runHttpRequest(() => this.fetch(this.connectUrl, init)));
  }
}

async function connect(args) {
  const [base, agentId, threadId] = args.splice(0, 3);
  if (!threadId) usage("connect needs <base> <agentId> <threadId>");
  const lastEventId = option(args, "--last-event-id");
  const headers = lastEventId ? { "last-event-id": lastEventId } : {};
  let status = 0;
  const agent = new ConnectingAgent({
    url: `${base}/v1/agui/agent/${agentId}/run`,
    connectUrl: `${base}/v1/agui/agent/${agentId}/connect`,
    threadId,
    headers,
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      status = response.status;
      return response;
    },
  });
  const events = [];
  // A copy: the client applies a snapshot's own message objects, and grows them later.
  const onEvent = ({ event }) => {
    events.push(structuredClone(event));
  };
  await agent.connectAgent({ runId: `connect-${Date.now()}` }, { onEvent });
  return { status, events, messages: agent.messages };
}

const [command, ...rest] = process.argv.slice(2);
const commands = { read, run, connect };
if (!commands[command]) usage(`unknown command ${command}`);
commands[command](rest)
  .then((out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
  })
  .catch(fail);
