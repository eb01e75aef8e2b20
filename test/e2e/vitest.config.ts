import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The browser suite: the chat example (examples/chat) in real headless
// Chromium against `wrangler dev`. Run by `npm run test:e2e`, which builds the
// package and the example first; `npm test` runs it after the other suites.
//
// Files run one at a time: each starts its own wrangler dev and Chromium, and
// CI machines have two cores. No retries: a flaky test is a bug.
export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    name: "e2e",
    include: ["test/e2e/**/*.test.ts"],
    environment: "node",
    pool: "forks",
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    retry: 0,
  },
});
