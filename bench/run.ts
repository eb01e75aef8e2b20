/**
 * `npm run bench` — every workload of issue 6 against a real room in local
 * workerd, side by side with peers and baselines measured in the same run.
 * Prints a table and writes bench/results/latest.json.
 *
 *   npm run bench                  full run (writes bench/results/latest.json)
 *   npm run bench -- --quick       < 2 min, fewer repetitions, shorter idle (writes bench/results/quick.json)
 *   npm run bench -- --only w1,w4  some workloads only (writes bench/results/partial.json)
 *   npm run bench -- --out FILE    write the JSON elsewhere
 *
 * Benchmarks never fail on a number: a missed goal is printed, not thrown.
 */
// TanStack DB's dev-mode index suggestions print warnings and track query
// timings on every live-query run; a production build does neither. Set before
// anything from @tanstack/db runs.
process.env.NODE_ENV = "production";

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configureIndexDevMode } from "@tanstack/db";
import type { BenchContext, Metric } from "./lib/context.js";
import { cpuBusy, waitForQuietMachine } from "./lib/machine.js";
import { startBenchRoom } from "./lib/room.js";
import { GOALS, renderTable, type NotMeasured } from "./lib/report.js";
import { runApply } from "./w1-apply.js";
import { runResumeBytes } from "./w4-resume-bytes.js";
import { runColumnDelta } from "./w4b-column-delta.js";
import { runIdleWakes } from "./w6-idle-wakes.js";
import { runBundleSize } from "./bundle-size.js";
import { runRemoteVisible } from "./w2-remote-visible.js";
import { runFanout } from "./w2b-fanout.js";
import { runReplay } from "./w3-replay.js";
import { runBoot } from "./w5-boot.js";
import { runBigShapes } from "./w7-big-shapes.js";

configureIndexDevMode({ enabled: false });

const here = path.dirname(fileURLToPath(import.meta.url));

interface Workload {
  id: string;
  title: string;
  /** The metric names it produces (to report "not measured" when it cannot run). */
  metrics: string[];
  run(ctx: BenchContext): Promise<Metric[] | NotMeasured>;
}

const WORKLOADS: Workload[] = [
  { id: "w1", title: "W1 apply throughput", metrics: ["apply_rows_per_s", "apply_bare_tanstack_rows_per_s", "apply_bare_tanstack_parsed_rows_per_s", "apply_replicache_rows_per_s"], run: runApply },
  { id: "w2", title: "W2 remote visible", metrics: ["remote_visible_p50_ms", "remote_visible_p99_ms"], run: runRemoteVisible },
  { id: "w2b", title: "W2b fan-out to 1,000 sockets", metrics: ["fanout_1000_ms", "fanout_1000_p90_ms", "fanout_raw_1000_ms", "fanout_raw_1000_p90_ms"], run: runFanout },
  { id: "w3", title: "W3 offline replay", metrics: ["replay_pipelined_ms", "replay_serial_ms"], run: runReplay },
  { id: "w4", title: "W4 resume bytes", metrics: ["resume_bytes", "snapshot_bytes", "changed_final_state_bytes"], run: runResumeBytes },
  { id: "w4b", title: "W4b column updates, bytes", metrics: ["delta_update_bytes", "changed_columns_bytes"], run: runColumnDelta },
  { id: "w5", title: "W5 boot from cache", metrics: ["boot_cache_ms", "boot_network_ms", "boot_ready_before_socket", "boot_ondemand_cache_ms", "boot_ondemand_network_ms"], run: runBoot },
  { id: "w6", title: "W6 idle wakes", metrics: ["idle_wakes"], run: runIdleWakes },
  {
    id: "w7",
    title: "W7 shapes of any size",
    metrics: ["big_rows", "big_eager_first_result_ms", "big_eager_bytes", "big_eager_heap_mb", "big_ondemand_first_result_ms", "big_ondemand_bytes", "big_ondemand_heap_mb", "big_1m_rows", "big_1m_snapshot_ms", "big_1m_bytes", "big_1m_room_rss_before_mb", "big_1m_room_rss_peak_mb"],
    run: runBigShapes,
  },
  { id: "bundle", title: "bundle size", metrics: ["bundle_gzip_bytes", "bundle_reads_only_gzip_bytes"], run: runBundleSize },
];

function parseArgs(argv: string[]) {
  const quick = argv.includes("--quick");
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? new Set(argv[onlyAt + 1]?.split(",").map((s) => s.trim().toLowerCase())) : undefined;
  const outAt = argv.indexOf("--out");
  const out =
    outAt >= 0
      ? path.resolve(argv[outAt + 1])
      : path.join(here, "results", only ? "partial.json" : quick ? "quick.json" : "latest.json");
  return { quick, only, out };
}

function machineInfo() {
  const cpus = os.cpus();
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return undefined;
    }
  };
  const version = (name: string) => {
    try {
      return (JSON.parse(readFileSync(path.join(here, "..", "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
    } catch {
      return undefined;
    }
  };
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((n) => Math.round(n * 100) / 100),
    versions: {
      "@tanstack/db": version("@tanstack/db"),
      replicache: version("replicache"),
      miniflare: version("miniflare"),
      partysocket: version("partysocket"),
    },
    commit: run("git", ["rev-parse", "--short", "HEAD"]),
    dirtyWorkTree: (run("git", ["status", "--porcelain", "--untracked-files=no"]) ?? "") !== "",
  };
}

async function main(): Promise<void> {
  const { quick, only, out } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const busyBefore = quick ? await cpuBusy() : await waitForQuietMachine(180_000);
  const machine = { ...machineInfo(), otherCpuBusyAtStart: busyBefore === undefined ? undefined : Math.round(busyBefore * 100) / 100 };
  console.log(`Lunora DB benchmarks (${quick ? "quick" : "full"}) — node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, load ${machine.loadAverageAtStart.join(" ")}, CPU busy before start ${busyBefore === undefined ? "?" : `${Math.round(busyBefore * 100)}%`}`);

  const worker = await startBenchRoom();
  let rooms = 0;
  const notes: Record<string, string[]> = {};
  const ctx: BenchContext = {
    quick,
    worker,
    freshRoom: (prefix) => `${prefix}-${started.toString(36)}-${rooms++}`,
    note: (workload, text) => {
      (notes[workload] ??= []).push(text);
      console.log(`  [${workload}] ${text}`);
    },
  };

  const metrics: Record<string, number> = {};
  const notMeasured: Record<string, string> = {};
  try {
    for (const workload of WORKLOADS) {
      if (only && !only.has(workload.id)) continue;
      const t0 = Date.now();
      process.stdout.write(`▶ ${workload.title} …\n`);
      try {
        const result = await workload.run(ctx);
        if ("notMeasured" in result) {
          for (const name of workload.metrics) notMeasured[name] = result.notMeasured;
          for (const metric of result.partial ?? []) metrics[metric.name] = metric.value;
          console.log(`  not measured: ${result.notMeasured}${result.partial ? ` (measured: ${result.partial.map((m) => `${m.name}=${m.value}`).join("  ")})` : ""}`);
        } else {
          for (const metric of result) metrics[metric.name] = metric.value;
          console.log(`  ${result.map((m) => `${m.name}=${m.value}`).join("  ")}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        }
      } catch (error) {
        const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
        const reason = `failed: ${error instanceof Error ? error.message : String(error)}${cause}`;
        for (const name of workload.metrics) notMeasured[name] = reason;
        console.log(`  ${reason}`);
        if (process.env.BENCH_DEBUG) console.error(error);
      }
    }
  } finally {
    await worker.stop();
  }

  const report = {
    machine,
    mode: quick ? "quick" : only ? `only ${[...only].join(",")}` : "full",
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    loadAverageAtEnd: os.loadavg().map((n) => Math.round(n * 100) / 100),
    metrics,
    notMeasured,
    goals: GOALS.map(({ label, goal }) => ({ label: typeof label === "function" ? label(metrics) : label, goal })),
    notes,
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + "\n");
  console.log("");
  console.log(renderTable(metrics, notMeasured));
  console.log(`\nwrote ${path.relative(process.cwd(), out)} in ${report.durationSeconds} s`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
