// vitest for the conformance suite only (conformance.test.mjs); follow.mjs and the
// reference server are plain node scripts, not tests.
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["conformance.test.mjs"],
    // One file, its tests in order, as the suite is written to run.
    fileParallelism: false,
    // vitest's default is 5 s a test. The suite's tests make a few requests each (its
    // property-based and concurrent-writer tests a few hundred), and a correct server on
    // a busy two-core machine must not fail for being slow: a test that hangs still fails,
    // later. The tests that wait on a long-poll set their own limit (the long-poll
    // timeout + 1 s) and keep it.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // No retries: a test that passes only on a second try is a finding, not a pass.
    retry: 0,
  },
})
