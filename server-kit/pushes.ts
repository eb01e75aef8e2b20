/**
 * The room's write queue: pushes from every socket are applied one batch at
 * a time, in arrival order, and their outcomes wait for the flush that
 * carries the rows they produced (group commit).
 */
import type { ClientFrame, MutationResult } from "../src/protocol/index.js";
import type { LunoraDb } from "./db.js";
import { applyPush, type MutationContext, type ServerMutatorDefinition } from "./mutators.js";
import type { SocketAttachment } from "./socket-state.js";

/** Pushes a room queues before it answers new ones with a transient `QUOTA_EXCEEDED`. */
export const MAX_QUEUED_PUSHES = 256;

type Push = Extract<ClientFrame, { type: "push" }>;

export interface PushQueueDeps<Env> {
  sql: SqlStorage;
  storage: DurableObjectStorage;
  mutators: Record<string, ServerMutatorDefinition>;
  env: Env;
  db: LunoraDb;
  /** Sends every subscriber what changed, with the outcomes waiting in the queue. */
  flush(outcomes?: Map<WebSocket, MutationResult[]>): void;
}

export class PushQueue<Env> {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;
  private outcomes = new Map<WebSocket, MutationResult[]>();
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** True while batches are being applied: their flush carries rows and outcomes together, so no other flush may split them. */
  applying = false;

  constructor(private readonly deps: PushQueueDeps<Env>) {}

  /**
   * Applies a batch of writes in order, exactly once per (identity, clientId,
   * clientSeq), then flushes: the outcomes ride in the same poke as the rows
   * they produced (a poke with no rows when no subscription sees them).
   */
  enqueue(ws: WebSocket, attachment: SocketAttachment, frame: Push): Promise<void> {
    if (this.queued >= MAX_QUEUED_PUSHES) {
      // Bounded: the writer retries these later (transient), nothing is lost.
      const results: MutationResult[] = frame.mutations.map((mutation) => ({
        clientSeq: mutation.clientSeq,
        status: "error",
        error: { code: "QUOTA_EXCEEDED", message: "the room is busy; retry" },
      }));
      this.deps.flush(new Map([[ws, results]]));
      return Promise.resolve();
    }
    this.queued++;
    const run = async () => {
      this.applying = true;
      try {
        const { auth, room, identity } = attachment;
        const { sql, storage, env, db } = this.deps;
        const results = await applyPush(
          {
            sql,
            transactionSync: (fn) => storage.transactionSync(fn),
            mutators: this.deps.mutators,
            identity,
            clientId: frame.clientId,
            makeContext: (clientId, clientSeq): MutationContext => ({ auth, room, env, db, sql, clientId, clientSeq }),
          },
          frame.mutations,
        );
        this.hold(ws, results);
      } catch (error) {
        console.error("lunora: push failed", error);
      } finally {
        this.queued--;
        // Group commit: while more pushes wait, keep going; the last one
        // flushes once for all of them (outcomes still ride with their rows).
        if (this.queued === 0) {
          this.applying = false;
          this.scheduleFlush();
        }
      }
    };
    const next = this.tail.then(run);
    this.tail = next;
    return next;
  }

  /** Keeps outcomes for the next flush. */
  hold(ws: WebSocket, results: MutationResult[]): void {
    const pending = this.outcomes.get(ws);
    if (pending) pending.push(...results);
    else this.outcomes.set(ws, results);
  }

  /** The outcomes waiting for a flush (merged with `extra`), handed over once. */
  take(extra?: Map<WebSocket, MutationResult[]>): Map<WebSocket, MutationResult[]> | undefined {
    if (this.outcomes.size === 0) return extra;
    for (const [ws, results] of extra ?? []) this.hold(ws, results);
    const taken = this.outcomes;
    this.outcomes = new Map();
    return taken;
  }

  /**
   * Group commit. The runtime delivers one socket message at a time, so
   * pushes never queue up inside the object; under load they queue in the
   * runtime instead. Flushing on the next macrotask rather than at once lets
   * the pushes already waiting run first, so one flush (one poke per socket)
   * carries all of them. Idle, the timer fires at once and nothing stays
   * pending.
   */
  private scheduleFlush(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.deps.flush();
    }, 0);
  }
}
