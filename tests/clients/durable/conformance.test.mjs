// The Durable Streams server conformance suite (@durable-streams/server-conformance-tests),
// run against one base URL. Driven by tests/support/durable.py, which sets:
//
//   DURABLE_STREAMS_URL            the server's base URL; the suite adds /v1/stream/{name}
//   DURABLE_STREAMS_LONG_POLL_MS   the server's long-poll timeout, in milliseconds
//
// The package's own CLI does not find its runner when installed under node_modules, so
// this file calls runConformanceTests() itself, as the package's src/test-runner.ts does.
// longPollTimeoutMs only sets the per-test timeout (it + 1 s) of the five tests that wait
// for a long-poll to time out; it tells the server nothing.

import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DURABLE_STREAMS_URL
const longPollTimeoutMs = Number(process.env.DURABLE_STREAMS_LONG_POLL_MS)

if (!baseUrl || !/^https?:\/\/\S+[^/]$/.test(baseUrl)) {
  throw new Error(
    `DURABLE_STREAMS_URL must be a base URL without a trailing slash` +
      ` (http://127.0.0.1:PORT), not ${JSON.stringify(baseUrl)}`
  )
}
if (!Number.isFinite(longPollTimeoutMs) || longPollTimeoutMs <= 0) {
  throw new Error(
    `DURABLE_STREAMS_LONG_POLL_MS must be the server's long-poll timeout in ms,` +
      ` not ${JSON.stringify(process.env.DURABLE_STREAMS_LONG_POLL_MS)}`
  )
}

runConformanceTests({ baseUrl, longPollTimeoutMs })
