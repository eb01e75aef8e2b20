import type { LocalWorker } from "../../src/testing/index.js";

/** What every workload gets from the runner. */
export interface BenchContext {
  quick: boolean;
  /** The benchmark room, shared by the workloads (each uses fresh rooms). */
  worker: LocalWorker;
  /** A room name no earlier workload used. */
  freshRoom(prefix: string): string;
  /** A line for the report (details behind a number). */
  note(workload: string, text: string): void;
}

/** One measured number (exact metric names are part of latest.json's contract). */
export interface Metric {
  name: string;
  value: number;
}
