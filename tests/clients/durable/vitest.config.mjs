// vitest for the conformance suite only (conformance.test.mjs); follow.mjs and the
// reference server are plain node scripts, not tests.
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// The short form of the suite's property tests: each property a share of its runs
// (fast-check-share.mjs). The suite is then run through vitest's transform (inline) so
// that its import of "fast-check" finds that file; unset, it runs as installed.
const propertyShare = process.env.DURABLE_STREAMS_PROPERTY_SHARE
const shortProperties = propertyShare
  ? {
      alias: { "fast-check": fileURLToPath(new URL("fast-check-share.mjs", import.meta.url)) },
      server: { deps: { inline: ["@durable-streams/server-conformance-tests"] } },
    }
  : {}

export default defineConfig({
  test: {
    include: ["conformance.test.mjs"],
    // One file, its tests in order, as the suite is written to run.
    fileParallelism: false,
    // vitest's default is 5 s a test. The suite's longest tests sleep 4 s (its TTL tests)
    // and others make many requests, so a correct server on a busy two-core machine could
    // fail for being slow. 15 s leaves room while a test that hangs (a client retrying a
    // refused connection) still ends soon. The tests that wait on a long-poll set their
    // own limit (the long-poll timeout + 1 s) and keep it.
    testTimeout: 15_000,
    hookTimeout: 15_000,
    // The suite runs its TTL tests (17, each waiting out seconds of a stream's life) as
    // concurrent tests; vitest's default runs 5 of them at a time. All of them at once:
    // the same tests, waiting side by side.
    maxConcurrency: 20,
    // No retries: a test that passes only on a second try is a finding, not a pass.
    retry: 0,
    ...shortProperties,
  },
})
