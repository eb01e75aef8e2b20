/**
 * Does TanStack DB do more index work for our writes than for the bare
 * baseline's? Counts the calls into `BasicIndex` (every method of its
 * prototype) during W1's timed section, for ours and for bare TanStack:
 *
 *   npx tsx bench/w1-index-work.ts
 *
 * Deterministic, unlike the timings: the counts do not depend on the
 * machine's load. (Timings printed here are distorted by the counting.)
 */
process.env.NODE_ENV = "production";

import { BasicIndex, configureIndexDevMode } from "@tanstack/db";
import { startBenchRoom } from "./lib/room.js";
import { recordW1, runBare, runOurs } from "./w1-apply.js";

configureIndexDevMode({ enabled: false });

const counts = new Map<string, number>();
let counting = false;
const count = (name: string) => counts.set(name, (counts.get(name) ?? 0) + 1);
const proto = BasicIndex.prototype as unknown as Record<string, unknown>;
for (const name of Object.getOwnPropertyNames(proto)) {
  const descriptor = Object.getOwnPropertyDescriptor(proto, name);
  const method = descriptor?.value;
  if (name === "constructor" || typeof method !== "function") continue;
  proto[name] = function (this: unknown, ...args: unknown[]) {
    if (counting) {
      count(name);
      // Range reads take a row filter last: count the rows they test.
      const last = args.length - 1;
      const filter = args[last];
      if (typeof filter === "function") {
        args[last] = (...row: unknown[]) => {
          count(`${name} rows tested`);
          return (filter as (...a: unknown[]) => unknown)(...row);
        };
      }
    }
    return (method as (...a: unknown[]) => unknown).apply(this, args);
  };
}

const worker = await startBenchRoom();
try {
  const rec = await recordW1({ quick: true, worker, freshRoom: (prefix: string) => `${prefix}-${Date.now()}`, note: () => {} });
  const hooks = {
    start: () => {
      counts.clear();
      counting = true;
    },
    stop: () => {
      counting = false;
    },
  };
  const results: Record<string, Record<string, number>> = {};
  for (const [which, run] of [["ours", runOurs], ["bare", runBare]] as const) {
    await run(rec); // warm-up
    await run(rec, hooks);
    results[which] = Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
  }
  const names = [...new Set([...Object.keys(results.ours), ...Object.keys(results.bare)])].sort();
  console.log("BasicIndex calls in W1's timed section (10,000 changes):");
  for (const name of names) console.log(`  ${name.padEnd(28)} ours ${String(results.ours[name] ?? 0).padStart(8)}   bare ${String(results.bare[name] ?? 0).padStart(8)}`);
  const same = names.every((name) => results.ours[name] === results.bare[name]);
  console.log(same ? "same index work for both" : "DIFFERENT index work");
} finally {
  await worker.stop();
}
process.exit(0);
