/**
 * Messages between W2b's measuring process and its socket-holding children
 * (arrivals.ts ↔ arrival-child.ts), over the Node IPC channel.
 */

/**
 * Milliseconds on CLOCK_MONOTONIC (`process.hrtime`). On Linux that clock is
 * shared by every process of the machine and never stepped, so a stamp taken
 * in a child can be subtracted from one taken in the parent. (`Date.now()`
 * can step; `performance.now()` counts from each process's own start.)
 */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export type ParentCommand =
  | { type: "clock" }
  | {
      type: "open";
      /** A name for this set of sockets, used by "watch". */
      group: string;
      /** "lunora": a sync socket that subscribes to `subscribe` first; "raw": a plain socket to the raw fan-out object. */
      kind: "lunora" | "raw";
      /** WebSocket URL without query (lunora: the `v` and `token` parameters are added). */
      url: string;
      count: number;
      tokenPrefix: string;
      firstIndex: number;
      subscribe?: unknown;
    }
  | { type: "watch"; group: string; marker: string; watchId: number }
  /** How many sockets of the group have the watched marker (diagnostics for a timeout). */
  | { type: "progress"; group: string }
  | { type: "close" };

export type ChildReport =
  | { type: "started" }
  | { type: "clock"; now: number }
  | { type: "opened"; group: string }
  | { type: "watching"; watchId: number }
  /** Every socket of the watched group has a frame containing the marker: earliest and latest arrival (monotonic ms). */
  | { type: "arrived"; watchId: number; first: number; last: number; frameBytes: number }
  | { type: "progress"; arrived: number; of: number; open: number; marker: string | null }
  | { type: "failed"; message: string };
