import type { LocalWorker } from "../src/testing/index.js";
import { describeStep, generateScenario, type Scenario } from "./schedule.js";
import { World, type Failure } from "./world.js";

export interface SeedResult {
  seed: number;
  failures: Failure[];
  /** Step indices of the smallest failing schedule found (when shrunk). */
  trace?: number[];
}

let runCounter = 0;

/** Runs one seed (optionally a subset of its steps) on a fresh room of the worker. */
export async function runScenario(worker: LocalWorker, scenario: Scenario, options: { only?: ReadonlySet<number>; verbose?: boolean; print?: (line: string) => void } = {}) {
  const room = `sim-${scenario.seed}-${runCounter++}-${Date.now().toString(36)}`;
  const world = new World(worker, room, options.verbose ? options.print : undefined);
  const failures = await world.run(scenario, options.only);
  const rejected = world.writes.filter((write) => write.rejections.length > 0).length;
  return { failures, executed: world.executed, stats: `${world.writes.length} writes, ${rejected} rejected or dropped` };
}

/**
 * Shrinks a failing schedule: drops chunks of steps (halves, then smaller)
 * while the same invariant still fails. Bounded by `attempts` re-runs.
 */
async function shrink(worker: LocalWorker, scenario: Scenario, invariant: string, steps: number[], attempts = 16, budgetMs = 120_000): Promise<number[]> {
  let current = steps;
  let chunk = Math.ceil(current.length / 2);
  const deadline = Date.now() + budgetMs;
  while (chunk >= 1 && attempts > 0 && Date.now() < deadline) {
    let removedAny = false;
    for (let start = 0; start < current.length && attempts > 0 && Date.now() < deadline; start += chunk) {
      const candidate = [...current.slice(0, start), ...current.slice(start + chunk)];
      if (candidate.length === 0) continue;
      attempts--;
      const { failures } = await runScenario(worker, scenario, { only: new Set(candidate) });
      if (failures.some((failure) => failure.invariant === invariant)) {
        current = candidate;
        removedAny = true;
        start -= chunk;
      }
    }
    if (!removedAny) chunk = Math.floor(chunk / 2);
  }
  return current;
}

export async function runSeeds(
  worker: LocalWorker,
  options: {
    first?: number;
    count?: number;
    /** Explicit seeds (instead of first/count). */
    seeds?: number[];
    steps?: number;
    only?: ReadonlySet<number>;
    verbose?: boolean;
    shrink?: boolean;
    print: (line: string) => void;
  },
): Promise<{ passed: number; failed: number; results: SeedResult[] }> {
  const results: SeedResult[] = [];
  let passed = 0;
  let failed = 0;
  const seeds = options.seeds ?? Array.from({ length: options.count ?? 1 }, (_, i) => (options.first ?? 1) + i);
  for (const seed of seeds) {
    const scenario = generateScenario(seed, options.steps === undefined ? {} : { steps: options.steps });
    const started = Date.now();
    const { failures, executed, stats } = await runScenario(worker, scenario, options);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (failures.length === 0) {
      passed++;
      options.print(`seed ${seed}: ok (${scenario.clients} clients, ${executed.length} steps, ${stats}, ${seconds} s)`);
      results.push({ seed, failures });
      continue;
    }
    failed++;
    const first = failures[0];
    options.print(`seed ${seed}: FAILED — ${first.invariant}`);
    for (const failure of failures.slice(0, 5)) options.print(`  ${failure.invariant}: ${failure.detail}`);
    let trace = executed;
    if (options.shrink !== false && first.invariant !== "the simulation ran") {
      trace = await shrink(worker, scenario, first.invariant, executed);
    }
    options.print(`  minimal trace (${trace.length} of ${executed.length} steps, ${scenario.clients} clients):`);
    for (const index of trace) options.print(`    #${index} ${describeStep(scenario.steps[index])}`);
    options.print(`  replay: npm run sim -- --seed ${seed}${options.steps === undefined ? "" : ` --steps ${options.steps}`} --only ${trace.join(",")} --verbose`);
    results.push({ seed, failures, trace });
  }
  return { passed, failed, results };
}
