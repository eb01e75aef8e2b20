/**
 * CPU profile of a workload's timed section:
 *
 *   npx tsx bench/profile.ts w1-ours|w1-bare|w5-cache|w5-network|w5-bare|w5-bare-rows-first [runs]
 *
 * Writes bench/results/<which>.cpuprofile.json (open it in Chrome DevTools →
 * Performance, or speedscope) and prints the functions with the most self
 * time, grouped by package.
 */
process.env.NODE_ENV = "production";

import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configureIndexDevMode } from "@tanstack/db";
import { startBenchRoom } from "./lib/room.js";
import { recordW1, runBare, runOurs, type TimedHooks } from "./w1-apply.js";
import { bareBoot, boot, prepareBoot } from "./w5-boot.js";

configureIndexDevMode({ enabled: false });

const which = process.argv[2] ?? "w1-ours";
if (!["w1-ours", "w1-bare", "w5-cache", "w5-network", "w5-bare", "w5-bare-rows-first"].includes(which)) throw new Error(`unknown target ${which}`);
const runs = Number(process.argv[3] ?? 5);
const here = path.dirname(fileURLToPath(import.meta.url));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

const worker = await startBenchRoom();
try {
  const ctx = { quick: true, worker, freshRoom: (p: string) => `${p}-${Date.now()}`, note: () => {} };
  let run: (hooks?: TimedHooks) => Promise<number>;
  if (which.startsWith("w1")) {
    const rec = await recordW1(ctx);
    run = async (hooks) => (await (which === "w1-ours" ? runOurs : runBare)(rec, hooks)).ms;
  } else if (which.startsWith("w5-bare")) {
    const rows = Array.from({ length: 10_000 }, (_, i) => ({ id: `r${i}`, listId: "W5", title: `item ${i}`, rank: i }));
    run = (hooks) => bareBoot(rows, hooks, which === "w5-bare-rows-first");
  } else {
    const prepared = await prepareBoot(ctx);
    run = async (hooks) => (await boot(ctx, prepared.room, which === "w5-cache" ? prepared.primed : prepared.fresh(), hooks)).firstResultMs;
  }
  for (let i = 0; i < 3; i++) await run(); // warm-up
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  const hooks: TimedHooks = {
    start: () => session.post("Profiler.start"),
    stop: async () => {
      const { profile } = await session.post("Profiler.stop");
      profiles.push(profile as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] });
    },
  };
  const profiles: Array<{ nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }> = [];
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await run(hooks));
  session.disconnect();
  writeFileSync(path.join(here, "results", `${which}.cpuprofile.json`), JSON.stringify(profiles.at(-1)));

  const self = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  // Self time in µs: each sample's time delta goes to the node it hit.
  for (const profile of profiles) {
    const selfUs = new Map<number, number>();
    profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    for (const node of profile.nodes) {
      const hits = selfUs.get(node.id) ?? 0;
      if (hits === 0) continue;
      total += hits;
      const url = node.callFrame.url.replace(/^file:\/\//, "");
      const rel = url.includes("node_modules/") ? url.slice(url.lastIndexOf("node_modules/") + 13) : path.relative(path.join(here, ".."), url) || "(native)";
      const pkg = url.includes("node_modules/") ? rel.split("/").slice(0, rel.startsWith("@") ? 2 : 1).join("/") : rel.startsWith("src/") ? rel.split("/").slice(0, 2).join("/") : rel || "(native)";
      const key = `${node.callFrame.functionName || "(anonymous)"}  ${rel}:${node.callFrame.lineNumber + 1}`;
      self.set(key, (self.get(key) ?? 0) + hits);
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
    }
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}% ${(us / 1000 / runs).toFixed(1).padStart(6)} ms/run`;
  console.log(`${which}: ${runs} runs, ms ${times.map((t) => t.toFixed(0)).join(", ")}`);
  console.log(`profiled ${(total / 1000 / runs).toFixed(0)} ms/run ("(idle)" = the thread waited: I/O, timers)`);
  console.log("\nself time by package/folder:");
  for (const [pkg, hits] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(hits)}  ${pkg}`);
  console.log("\ntop functions by self time:");
  for (const [key, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 30))) console.log(`  ${pct(hits)}  ${key}`);
} finally {
  await worker.stop();
}
process.exit(0);
