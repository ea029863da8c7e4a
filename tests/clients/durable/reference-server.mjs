// The Durable Streams reference server (@durable-streams/server's DurableStreamTestServer),
// in memory on 127.0.0.1, for the harness to prove itself against:
// python -m tests.support.durable --reference.
//
//   node reference-server.mjs [PORT] [LONG_POLL_MS]
//
// PORT 0 (the default) lets the OS pick one. Prints one line
// "durable streams reference server listening on http://127.0.0.1:PORT" once it accepts
// connections, and stops on SIGTERM or SIGINT.

import { DurableStreamTestServer } from "@durable-streams/server"

const port = Number(process.argv[2] ?? 0)
const longPollTimeout = Number(process.argv[3] ?? 500)

const server = new DurableStreamTestServer({ host: "127.0.0.1", port, longPollTimeout })
const url = await server.start()
console.log(`durable streams reference server listening on ${url}`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await server.stop()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
