/**
 * `npm run sim -- --seeds N --seed S [--steps K] [--only 0,3,7] [--verbose]`
 *
 * A deterministic, seeded simulator: each seed generates the same schedule
 * (writes through actions and custom mutators, rejected writes, raw writes
 * by the room's own code, offline windows, reloads, socket drops right after
 * a push, room restarts, identity changes, scope moves, log trims) and runs
 * it against a real room in local workerd with 2–5 Node clients, each with
 * its own IndexedDB. After quiescence it checks convergence, exactly-once,
 * nothing lost, rejections reported once and identity isolation.
 *
 * A failing seed prints the invariant, a minimal trace (shrunk by re-running
 * subsets of its steps) and the command that replays it. The last line is
 * `N passed, N failed`; the exit code is non-zero on any failure.
 */
// idb checks `instanceof IDBRequest`: the fake-indexeddb classes must be global (each device still gets its own IDBFactory).
import "fake-indexeddb/auto";
import { parseArgs } from "node:util";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalWorker } from "../src/testing/index.js";
import { runSeeds } from "./simulate.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "1" },
    seed: { type: "string", default: "1" },
    steps: { type: "string" },
    only: { type: "string" },
    verbose: { type: "boolean", default: false },
    "no-shrink": { type: "boolean", default: false },
  },
});

const worker = await startLocalWorker({ config: path.join(here, "../test/fixtures/room/wrangler.jsonc") });
let failed = 0;
try {
  const summary = await runSeeds(worker, {
    first: Number(values.seed),
    count: Number(values.seeds),
    steps: values.steps === undefined ? undefined : Number(values.steps),
    only: values.only === undefined ? undefined : new Set(values.only.split(",").map(Number)),
    verbose: values.verbose,
    shrink: !values["no-shrink"],
    print: (line) => console.log(line),
  });
  failed = summary.failed;
  console.log(`${summary.passed} passed, ${summary.failed} failed`);
} finally {
  await worker.stop();
}
process.exit(failed > 0 ? 1 : 0);
