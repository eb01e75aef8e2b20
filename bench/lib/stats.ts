import v8 from "node:v8";
import vm from "node:vm";

/** Median of a non-empty list. */
export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile (p in 0–100) of a non-empty list. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Runs `once` `warmup` times unmeasured, then `reps` times; returns every measured value. */
export async function repeat(warmup: number, reps: number, once: () => Promise<number>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await once();
  const values: number[] = [];
  for (let i = 0; i < reps; i++) values.push(await once());
  return values;
}

/** Waits for the next macrotask; lets sockets and timers run. */
export const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` every `intervalMs` until it is truthy, or throws after `timeoutMs`. */
export async function until(predicate: () => unknown, what: string, timeoutMs = 60_000, intervalMs = 1): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await (intervalMs <= 0 ? tick() : sleep(intervalMs));
  }
}

/** A small deterministic PRNG (mulberry32), so every run writes the same data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

v8.setFlagsFromString("--expose-gc");
const collectGarbage = vm.runInNewContext("gc") as () => void;

/**
 * A full garbage collection before a timed section, so a run does not pay
 * for the garbage the previous one left (the peers allocate very
 * differently).
 */
export function settleHeap(): void {
  collectGarbage();
}
