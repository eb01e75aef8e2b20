import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// One `vitest run` runs every suite, as two projects:
//
// - "node": everything under test/ except the browser e2e suite and the
//   in-workerd suite. Test files start their own workerd through
//   `startLocalWorker` (Miniflare, ~1 s cold start), hence the generous
//   timeouts and the small worker pool for 2-core CI machines.
// - "workerd": test/workerd/** runs INSIDE workerd with
//   @cloudflare/vitest-pool-workers, against the fixture room Worker, to test
//   the server-kit against real DO SQLite from the inside.
//
// Tests never assert on wall-clock time, and there are no retries: a flaky
// test is a bug.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    retry: 0,
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: "node",
          environment: "node",
          pool: "forks",
          include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
          exclude: ["**/node_modules/**", "test/e2e/**", "test/workerd/**"],
        },
      },
      {
        extends: true,
        plugins: [
          cloudflareTest({
            main: "./test/fixtures/room/worker.ts",
            wrangler: { configPath: "./test/fixtures/room/wrangler.jsonc" },
          }),
        ],
        test: {
          name: "workerd",
          include: ["test/workerd/**/*.test.ts", "test/workerd/**/*.test.js"],
        },
      },
    ],
  },
});
