import { readFileSync } from "node:fs";

function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]; // "cpu  user nice system idle iowait irq softirq steal …"
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = values[3] + (values[4] ?? 0);
    const total = values.reduce((sum, v) => sum + v, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined; // not Linux
  }
}

/** Share of all CPUs busy over the next `ms` (0–1), or undefined where /proc/stat is missing. */
export async function cpuBusy(ms = 1_000): Promise<number | undefined> {
  const a = cpuTimes();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = cpuTimes();
  if (!a || !b || b.total === a.total) return undefined;
  return (b.busy - a.busy) / (b.total - a.total);
}

/**
 * Waits (at most `maxMs`) until other processes leave the CPUs mostly idle:
 * benchmarks on a 2-core machine shared with test runs measure the other
 * runs. Returns the busy share seen last.
 */
export async function waitForQuietMachine(maxMs: number, threshold = 0.25): Promise<number | undefined> {
  const started = Date.now();
  let busy = await cpuBusy();
  let told = false;
  while (busy !== undefined && busy > threshold && Date.now() - started < maxMs) {
    if (!told) {
      console.log(`  machine busy (${Math.round(busy * 100)}% CPU used by other processes); waiting up to ${Math.round(maxMs / 1000)} s for it to settle…`);
      told = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    busy = await cpuBusy();
  }
  return busy;
}
