// The package's unit tests: Node, against servers each test starts on 127.0.0.1.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    testTimeout: 15_000,
    pool: "threads",
    maxWorkers: 2,
  },
});
