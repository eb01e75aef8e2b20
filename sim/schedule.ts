import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/**
 * One step of a simulated schedule. Steps name clients by index and rows by
 * position ("the n-th row created so far"), never by generated ids, so the
 * same seed always yields the same schedule.
 */
export type Step =
  | { kind: "insert"; client: number; title: string }
  | { kind: "rename"; client: number; pick: number; title: string }
  | { kind: "bump"; client: number; pick: number }
  | { kind: "note"; client: number; body: string }
  | { kind: "raw"; op: "put" | "update" | "delete" | "lock"; pick: number; listId: string; title: string }
  | { kind: "offline"; client: number }
  | { kind: "online"; client: number }
  | { kind: "reload"; client: number }
  | { kind: "drop"; client: number; at: "now" | "afterNextPush" }
  | { kind: "restart" }
  | { kind: "identity"; client: number }
  | { kind: "scope"; client: number; listId: string }
  | { kind: "trim" }
  | { kind: "pause"; ms: number };

export interface Scenario {
  seed: number;
  clients: number;
  steps: Step[];
}

export const LIST_IDS = ["a", "b"] as const;

/** A seeded random source (xoroshiro128+ from pure-rand). */
export class Random {
  private readonly rng;
  constructor(seed: number) {
    this.rng = xoroshiro128plus(seed);
  }
  int(from: number, to: number): number {
    return uniformInt(this.rng, from, to);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
  chance(percent: number): boolean {
    return this.int(1, 100) <= percent;
  }
  word(): string {
    return this.pick(["apple", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor"]) + this.int(0, 999);
  }
}

/** Weighted step kinds: writes dominate, faults are frequent enough to meet each other. */
const WEIGHTS: Array<[Step["kind"], number]> = [
  ["insert", 24],
  ["rename", 8],
  ["bump", 10],
  ["note", 5],
  ["raw", 10],
  ["offline", 6],
  ["online", 6],
  ["reload", 5],
  ["drop", 5],
  ["restart", 1],
  ["identity", 2],
  ["scope", 3],
  ["trim", 2],
  ["pause", 8],
];

export function generateScenario(seed: number, options: { steps?: number } = {}): Scenario {
  const random = new Random(seed);
  const clients = random.int(2, 5);
  const count = options.steps ?? random.int(25, 45);
  const total = WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0);
  const steps: Step[] = [];
  for (let i = 0; i < count; i++) {
    let roll = random.int(1, total);
    let kind: Step["kind"] = "insert";
    for (const [candidate, weight] of WEIGHTS) {
      roll -= weight;
      if (roll <= 0) {
        kind = candidate;
        break;
      }
    }
    const client = random.int(0, clients - 1);
    switch (kind) {
      case "insert":
        // About one in eight writes is rejected by the server (empty title).
        steps.push({ kind, client, title: random.chance(12) ? "" : random.word() });
        break;
      case "rename":
        steps.push({ kind, client, pick: random.int(0, 1_000), title: random.word() });
        break;
      case "bump":
        steps.push({ kind, client, pick: random.int(0, 1_000) });
        break;
      case "note":
        steps.push({ kind, client, body: random.word() });
        break;
      case "raw":
        steps.push({ kind, op: random.pick(["put", "put", "update", "delete", "lock"] as const), pick: random.int(0, 1_000), listId: random.pick(LIST_IDS), title: random.word() });
        break;
      case "drop":
        steps.push({ kind, client, at: random.pick(["now", "afterNextPush"] as const) });
        break;
      case "scope":
        steps.push({ kind, client, listId: random.pick(LIST_IDS) });
        break;
      case "pause":
        steps.push({ kind, ms: random.int(0, 60) });
        break;
      case "restart":
      case "trim":
        steps.push({ kind });
        break;
      default:
        steps.push({ kind, client });
    }
  }
  return { seed, clients, steps };
}

export function describeStep(step: Step): string {
  const { kind, ...rest } = step;
  const fields = Object.entries(rest)
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`)
    .join(" ");
  return fields ? `${kind} ${fields}` : kind;
}
