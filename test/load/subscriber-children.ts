import path from "node:path";
import { fileURLToPath } from "node:url";
import { ForkedChild, splitEvenly } from "../helpers/forked-child.js";
import type { FromChild, SubscriberLog, ToChild } from "./subscriber-protocol.js";

type Child = ForkedChild<ToChild, FromChild>;

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Subscriber sockets spread over `count` child processes
 * (subscriber-child.ts): the test process only writes and checks.
 */
export class SubscriberChildren {
  private constructor(private readonly children: Child[]) {}

  static async start(count: number): Promise<SubscriberChildren> {
    return new SubscriberChildren(await Promise.all(Array.from({ length: count }, () => ForkedChild.start<ToChild, FromChild>(path.join(here, "subscriber-child.ts"), "subscriber child"))));
  }

  /** Opens `total` subscribed sockets, split evenly; `url` has `{token}` where the socket's token goes. */
  async open(url: string, total: number, subscribe: unknown): Promise<void> {
    const parts = splitEvenly(total, this.children.length);
    await Promise.all(this.children.map((child, i) => child.ask({ type: "open", url, count: parts[i][1], firstIndex: parts[i][0], subscribe }, "opened", 120_000)));
  }

  /** The fewest keys any socket has read, and how many sockets saw a violation. */
  async progress(): Promise<{ minKeys: number; withViolations: number }> {
    const all = (await Promise.all(this.children.map((child) => child.ask({ type: "progress" }, "progress")))) as Array<Extract<FromChild, { type: "progress" }>>;
    return { minKeys: Math.min(...all.map((p) => p.minKeys)), withViolations: all.reduce((sum, p) => sum + p.withViolations, 0) };
  }

  /** Every socket's log, and every delivery's latency (ms) for the keys in `sentAt`. */
  async collect(sentAt: Map<string, number>): Promise<{ subscribers: SubscriberLog[]; latencies: number[] }> {
    const all = (await Promise.all(this.children.map((child) => child.ask({ type: "collect", sentAt: Object.fromEntries(sentAt) }, "collected")))) as Array<
      Extract<FromChild, { type: "collected" }>
    >;
    return { subscribers: all.flatMap((c) => c.subscribers), latencies: all.flatMap((c) => c.latencies) };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.close()));
  }
}
