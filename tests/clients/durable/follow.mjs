// Follow one JSON Durable Stream live with the official client (@durable-streams/client),
// from its start until the server says the stream is closed, printing every JSON message
// as one line of JSON on stdout. Driven by tests/clients/test_durable_clients.py.
//
//   node follow.mjs URL [LIVE]
//
// URL    the stream, e.g. http://127.0.0.1:PORT/v1/stream/{generation id}; a ?token=
//        in it is kept on every request the client makes
// LIVE   the client's live mode: "auto" (the default: catch-up reads, then SSE, as the
//        client chooses for a JSON stream), "sse" or "long-poll"
//
// DURABLE_STREAMS_AUTHORIZATION, when set, is sent as the Authorization header of every
// request (e.g. "Bearer <viewer token>").
//
// Exit 0 only when the stream ended closed (Stream-Closed / streamClosed from the
// server): a read that ends for any other reason is not a complete follow, and exits 1
// with the reason on stderr, after the messages it did get.

import { stream } from "@durable-streams/client"

const [url, liveArg = "auto"] = process.argv.slice(2)
if (!url) {
  console.error("usage: node follow.mjs URL [auto|sse|long-poll]")
  process.exit(2)
}
const live = { auto: true, sse: "sse", "long-poll": "long-poll" }[liveArg]
if (live === undefined) {
  console.error(`follow.mjs: LIVE must be auto, sse or long-poll, not ${liveArg}`)
  process.exit(2)
}

const headers = {}
if (process.env.DURABLE_STREAMS_AUTHORIZATION) {
  headers.Authorization = process.env.DURABLE_STREAMS_AUTHORIZATION
}

try {
  const res = await stream({ url, offset: "-1", live, json: true, headers })
  let count = 0
  // jsonStream() flattens each response's JSON array into its messages and, with a live
  // mode, goes on until the client stops: at the stream's close, or on an error.
  for await (const message of res.jsonStream()) {
    process.stdout.write(JSON.stringify(message) + "\n")
    count++
  }
  if (!res.streamClosed) {
    console.error(
      `follow.mjs: the read of ${url} ended after ${count} messages without the stream` +
        ` being closed (offset ${res.offset})`
    )
    process.exit(1)
  }
  console.error(`follow.mjs: ${count} messages, stream closed at offset ${res.offset}`)
} catch (err) {
  console.error(`follow.mjs: ${err?.stack ?? err}`)
  process.exit(1)
}
