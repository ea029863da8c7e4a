// The peer of the fan-out comparison (tests/perf/compare.py): Vercel's resumable-stream
// on Node.js, serving the project's SSE URL from the same Redis and the same events.
//
// usage: node peer.mjs PORT REDIS_URL
//
// The first viewer of a stream makes its producer: a blocking XREAD loop over the
// project's event log (the Redis Stream the bench publishes to), which yields each event
// as the same SSE frame the project writes. resumable-stream keeps the producer's chunks
// in memory and relays them to every other viewer of that stream over Redis pub/sub
// (one PUBLISH per chunk per viewer: that is its design). Nothing here is tuned against
// it; it is the library used the way its README shows.
import http from "node:http";
import zlib from "node:zlib";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const [port, redisUrl] = process.argv.slice(2);
const TERMINAL = new Set(["finish", "error", "abort"]);

const publisher = createClient({ url: redisUrl });
const subscriber = createClient({ url: redisUrl });
await Promise.all([publisher.connect(), subscriber.connect()]);
const ctx = createResumableStreamContext({
  waitUntil: null,
  publisher,
  subscriber,
  keyPrefix: `peer-${process.pid}`,
});

// The project's key layout (broadcaster/keys.py): a slot-group hash tag from crc32.
const SLOT_GROUPS = 256;
function logKey(streamId) {
  return `bc:{sg${zlib.crc32(streamId) % SLOT_GROUPS}}:${streamId}:log`;
}

// The producer: the stream's events from its first, as SSE frames, until the terminal one.
function makeSource(streamId) {
  const reader = publisher.duplicate();
  let cursor = "0-0";
  let ended = false;
  return new ReadableStream({
    async start() {
      await reader.connect();
    },
    async pull(controller) {
      while (!ended) {
        const reply = await reader.xRead({ key: logKey(streamId), id: cursor }, { BLOCK: 5000, COUNT: 200 });
        if (!reply) continue;
        let out = "";
        for (const { messages } of reply) {
          for (const { id, message } of messages) {
            cursor = id;
            const seq = id.split("-")[0];
            out += `id: ${seq}\nevent: ${message.t}\ndata: ${message.d}\n\n`;
            if (TERMINAL.has(message.t)) {
              out += "data: [DONE]\n\n";
              ended = true;
            }
          }
        }
        if (out) {
          controller.enqueue(out);
          return;
        }
      }
      controller.close();
      await reader.quit();
    },
  });
}

const server = http.createServer(async (req, res) => {
  const m = /^\/v1\/streams\/([A-Za-z0-9_-]{1,64})\/events/.exec(req.url ?? "");
  if (req.method !== "GET" || !m) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":"not_found"}');
    return;
  }
  try {
    const stream = await ctx.resumableStream(m[1], () => makeSource(m[1]));
    if (!stream) {
      res.writeHead(204);
      res.end();
      return;
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
    res.write("retry: 1000\n\n");
    const reader = stream.getReader();
    req.on("close", () => reader.cancel().catch(() => {}));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise((r) => res.once("drain", r));
    }
    res.end();
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(err) }));
  }
});
server.listen(Number(port), "127.0.0.1", () => console.log(`peer listening on ${port}`));

process.on("SIGTERM", async () => {
  server.close();
  server.closeAllConnections();
  await Promise.allSettled([publisher.quit(), subscriber.quit()]);
  process.exit(0);
});
