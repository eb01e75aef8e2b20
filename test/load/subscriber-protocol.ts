/**
 * Messages between the 1,000-subscriber load test and the child processes
 * that hold its sockets (subscriber-child.ts), over the Node IPC channel.
 */

/**
 * Milliseconds on CLOCK_MONOTONIC (`process.hrtime`): on Linux one clock for
 * every process of the machine, so a child's arrival stamp and the test's
 * send stamp can be subtracted.
 */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export type ToChild =
  /** Open `count` sockets to `url` (tokens `user:reader${firstIndex + i}`), send `subscribe` on each, answer once each has its first poke. */
  | { type: "open"; url: string; count: number; firstIndex: number; subscribe: unknown }
  /** How far the sockets are. */
  | { type: "progress" }
  /** Everything each socket read; `sentAt` (key → monotonic ms) turns arrivals into latencies. */
  | { type: "collect"; sentAt: Record<string, number> }
  | { type: "close" };

export interface SubscriberLog {
  keys: string[];
  seqs: number[];
  violations: string[];
}

export type FromChild =
  | { type: "started" }
  | { type: "opened" }
  /** The fewest keys any socket has, and how many sockets recorded a violation. */
  | { type: "progress"; minKeys: number; withViolations: number }
  | { type: "collected"; subscribers: SubscriberLog[]; latencies: number[] }
  | { type: "failed"; message: string };
