// The package's unit tests: Node, against servers each test starts on 127.0.0.1.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    testTimeout: 15_000,
    pool: "threads",
    // One worker, its files sharing one module graph (not isolated): most of a run's CPU
    // was each file importing the AI SDK (ai 7 and ai 6) again. The package keeps no state
    // of its own between calls, and each test file restores what it changes (its mocks,
    // the globals it stands in for a browser's, its servers).
    maxWorkers: 1,
    isolate: false,
  },
});
