/**
 * The first poke of a subscription: the delta since its cursor when the log
 * still covers it, else a reset with a snapshot streamed page by page (see
 * snapshots.ts for why and how), pumped by the client's acks.
 */
import type { Cursor, MutationResult, ResolvedSubset } from "../src/protocol/index.js";
import { coalesceLog, countLogRows, readLog } from "./change-log.js";
import { sendOutcomesOnly } from "./fan-out.js";
import { PokeWriter } from "./poke-writer.js";
import { SNAPSHOT_WINDOW_CHARS, readSnapshotPage } from "./snapshots.js";
import { SlowConsumer, type SocketState } from "./socket-state.js";
import { addOp, type SocketOutput } from "./socket-output.js";
import { bindingOf, membershipOp, type ResolvedSubscription } from "./subscriptions.js";
import { syncedValue } from "./values.js";

/** Where the room's change log stands, as initial pokes need it (read fresh for each call). */
export interface LogPosition {
  sql: SqlStorage;
  epoch: string;
  /** The highest log seq already sent to subscribers: where every subscription is. */
  flushedSeq: number;
  /** The log holds no entries at or below this seq. */
  trimmedThrough: number;
  /** Key column of each synced table (to coalesce log entries). */
  keys: ReadonlyMap<string, string>;
  /** Per synced table, the log seq at which its columns last changed: a cursor must be past it to resume. */
  schemaSeqs: ReadonlyMap<string, number>;
}

export class InitialPokes {
  constructor(
    private readonly log: () => LogPosition,
    private readonly out: SocketOutput,
    /** A resume that would read more log rows than this gets a reset instead. */
    private readonly maxResumeLogRows: number,
  ) {}

  /**
   * The delta since `cursor` when the log still covers it in this epoch (one
   * poke, bounded by `maxResumeLogRows`), else a reset with a streamed
   * snapshot. Either way the poke binds `sub` to its group. `subsets`
   * reports what a limited subset resolved to (it always starts with a
   * reset).
   *
   * The caller has flushed: every other subscription of the socket is at
   * `flushedSeq`, the cursor this poke carries.
   */
  send(ws: WebSocket, state: SocketState, sub: ResolvedSubscription, cursor: Cursor | undefined, subsets?: ResolvedSubset[]): void {
    const log = this.log();
    const through = log.flushedSeq;
    const canResume =
      cursor !== undefined &&
      cursor.epoch === log.epoch &&
      cursor.seq >= log.trimmedThrough &&
      cursor.seq <= through &&
      cursor.seq > (log.schemaSeqs.get(sub.table) ?? -1) &&
      countLogRows(log.sql, cursor.seq, through) <= this.maxResumeLogRows;
    if (!canResume) return this.openSnapshot(ws, state, [sub], subsets, true);
    try {
      const changes = coalesceLog(readLog(log.sql, cursor.seq, through), log.keys)!;
      const writer = new PokeWriter(this.out.pokeSender(ws, state), this.out.nextPokeId(through)).start({ bind: [bindingOf(sub)] });
      // Every key appears once: kinds may be reordered into fewer blocks.
      const deletes: string[] = [];
      const patches: string[] = [];
      for (const change of changes.values()) {
        const op = membershipOp(sub, change);
        if (op === null) continue;
        if (op[0] === "p") addOp(writer, sub, "p", op[1]);
        else (op[0] === "u" ? patches : deletes).push(op[1]);
      }
      for (const patch of patches) addOp(writer, sub, "u", patch);
      for (const key of deletes) addOp(writer, sub, "d", key);
      writer.end({ seq: through, epoch: log.epoch });
    } catch (error) {
      if (error instanceof SlowConsumer) return this.out.closeSlowConsumer(ws);
      this.out.endSubscription(ws, state, sub.id, error);
    }
  }

  /**
   * Opens a poke that resets `targets` and streams their snapshots; `bind`:
   * the targets are started by it (a subscribe's answer) rather than
   * already bound (a new epoch). Every bound subscription of the socket
   * advances with the poke, so flushes append their changes while it is
   * open. `subsets` reports what limited subsets among the targets resolved
   * to; `outcomes` (of the socket's pushes, whose data the snapshot reads)
   * ride in its `pokeEnd`.
   */
  openSnapshot(ws: WebSocket, state: SocketState, targets: ResolvedSubscription[], subsets?: ResolvedSubset[], bind = false, outcomes: MutationResult[] = []): void {
    const { flushedSeq } = this.log();
    const writer = new PokeWriter(this.out.pokeSender(ws, state), this.out.nextPokeId(flushedSeq));
    writer.start({ bind: bind ? targets.map(bindingOf) : undefined, resets: targets.map((target) => target.id), subsets });
    state.open = { writer, scans: targets.map((target) => ({ target, after: undefined, done: false })), seq: flushedSeq, mutations: [...outcomes] };
    state.attachment.streaming = true;
    this.out.saveAttachment(ws, state);
    this.pump(ws, state);
  }

  /**
   * Reads snapshot pages into the open poke while the socket has window;
   * ends the poke when every scan is done, then starts what waited for it.
   */
  pump(ws: WebSocket, state: SocketState): void {
    const open = state.open;
    if (open === undefined) return;
    const log = this.log();
    let scan = open.scans.find((candidate) => !candidate.done);
    try {
      while (scan !== undefined && state.unacked < SNAPSHOT_WINDOW_CHARS) {
        const sub = state.subs.get(scan.target.id);
        if (sub === undefined) {
          scan.done = true; // unsubscribed meanwhile
        } else {
          for (const raw of readSnapshotPage(log.sql, scan)) {
            // Null prototype: a column may be named "__proto__".
            const row: Record<string, unknown> = Object.create(null);
            for (const column of sub.columns) row[column] = syncedValue(raw[column]);
            addOp(open.writer, sub, "p", JSON.stringify(row));
          }
        }
        if (scan.done) scan = open.scans.find((candidate) => !candidate.done);
      }
      if (scan !== undefined) return; // the next ack reads on
      state.open = undefined;
      delete state.attachment.streaming;
      this.out.saveAttachment(ws, state);
      open.writer.end({ seq: open.seq, epoch: log.epoch }, open.mutations);
    } catch (error) {
      state.open = undefined;
      if (error instanceof SlowConsumer) return this.out.closeSlowConsumer(ws);
      // A row larger than a frame: the error frame also tells the client to
      // drop the open poke, and the client subscribes the other subscriptions
      // it covered again. Outcomes it carried still reach the writer.
      delete state.attachment.streaming;
      if (scan !== undefined) this.out.endSubscription(ws, state, scan.target.id, error);
      sendOutcomesOnly(this.out, log.epoch, ws, state, open.mutations, open.seq);
      // The poke is over (abandoned): what waited for it starts now, as after
      // a poke that ended normally, or those subscribes were never answered.
    }
    for (const next of state.waiting.splice(0)) {
      if (state.open) {
        state.waiting.push(next);
        continue;
      }
      void next();
    }
  }
}
