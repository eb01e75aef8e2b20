import path from "node:path";
import { fileURLToPath } from "node:url";
import { ForkedChild, splitEvenly } from "../../test/helpers/forked-child.js";
import { monotonicMs, type ChildReport, type ParentCommand } from "./arrival-protocol.js";

type Child = ForkedChild<ParentCommand, ChildReport>;

const here = path.dirname(fileURLToPath(import.meta.url));

/** One W2b observation: when the first and the last watched socket had the marker (monotonic ms). */
export interface Arrival {
  first: number;
  last: number;
  frameBytes: number;
}

/**
 * Sockets spread over several child processes (arrival-child.ts), so that
 * reading 1,000 frames is done by several event loops, none of them the
 * measuring one. `watch(group, marker)` arms every child; the returned
 * promise resolves when every socket of the group, in every child, has
 * received a frame containing `marker`.
 */
export class ArrivalChildren {
  private constructor(private readonly children: Child[]) {}

  static async start(count: number): Promise<ArrivalChildren> {
    const children = await Promise.all(Array.from({ length: count }, () => ForkedChild.start<ParentCommand, ChildReport>(path.join(here, "arrival-child.ts"), "W2b child")));
    // The stamps are only comparable if each child's clock is the parent's:
    // a child's reading must fall between the parent's before and after.
    for (const child of children) {
      for (let i = 0; i < 5; i++) {
        const before = monotonicMs();
        const { now } = (await child.ask({ type: "clock" }, "clock")) as { now: number };
        const after = monotonicMs();
        if (!(now >= before && now <= after)) {
          await Promise.all(children.map((c) => c.close()));
          throw new Error(`W2b: a child's monotonic clock is not the parent's (${before} ≤ ${now} ≤ ${after} fails)`);
        }
      }
    }
    return new ArrivalChildren(children);
  }

  /** Opens `total` sockets split evenly over the children (socket i gets token `${tokenPrefix}${i}`). */
  async open(spec: Omit<Extract<ParentCommand, { type: "open" }>, "type" | "count" | "firstIndex"> & { total: number }): Promise<void> {
    const { total, ...rest } = spec;
    const parts = splitEvenly(total, this.children.length);
    await Promise.all(this.children.map((child, i) => child.ask({ type: "open", ...rest, count: parts[i][1], firstIndex: parts[i][0] }, "opened", 180_000)));
  }

  private watchIds = 0;

  /**
   * Arms every child for `marker` on `group`; resolves once armed, with
   * `arrived`: the combined arrival (wrapped in an object: a promise that
   * resolved to a promise would wait for the arrival before the write).
   */
  async watch(group: string, marker: string, timeoutMs = 60_000): Promise<{ arrived: Promise<Arrival> }> {
    const watchId = this.watchIds++;
    const arrivals = this.children.map((child) => child.next("arrived", timeoutMs, (r) => (r as { watchId: number }).watchId === watchId));
    await Promise.all(this.children.map((child) => child.ask({ type: "watch", group, marker, watchId }, "watching")));
    const arrived = Promise.all(arrivals).then(
      (reports) => {
      const all = reports as Array<Extract<ChildReport, { type: "arrived" }>>;
      return { first: Math.min(...all.map((r) => r.first)), last: Math.max(...all.map((r) => r.last)), frameBytes: all[0].frameBytes };
      },
      async (error: Error) => {
        // Say how far each child got (a timeout alone does not tell a lost frame from a closed socket).
        const progress = await Promise.all(this.children.map((child) => child.ask({ type: "progress", group }, "progress", 5_000).catch(() => undefined)));
        const detail = progress.map((p) => (p ? `${(p as { arrived: number }).arrived}/${(p as { of: number }).of} (open ${(p as { open: number }).open})` : "?")).join(", ");
        throw new Error(`${error.message}; marker ${marker} arrived at: ${detail}`);
      },
    );
    return { arrived };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.close()));
  }
}
