import type { StandardSchemaV1 } from "@standard-schema/spec";
import { LunoraError, type ErrorBody } from "../src/protocol/errors.js";
import type { Mutation, MutationResult } from "../src/protocol/push.js";
import type { LunoraContext } from "./definitions.js";
import { constraintError, type LunoraDb } from "./db.js";
import { validateWithSchema } from "./validate.js";
import { boundedOutcome, MAX_RECORDED_REJECTION_BYTES } from "./outcome-bounds.js";

/** What a server mutator receives besides its args. */
export interface MutationContext<Auth = any, Env = any> extends LunoraContext<Auth, Env> {
  /** Row helpers over the synced tables; their writes are captured and synced. */
  db: LunoraDb;
  /** The room's SQLite, for anything else. Runs inside the mutation's transaction. */
  sql: SqlStorage;
  /** The writer's outbox id, and this mutation's number in it. */
  clientId: string;
  clientSeq: number;
}

/**
 * A server mutator: validated args, then a synchronous body that runs inside
 * one storage transaction together with its change-log rows and the client's
 * watermark. Throw `LunoraError` to reject the write with a code (recorded,
 * permanent). An SQLite constraint failure (UNIQUE, CHECK, NOT NULL, FOREIGN
 * KEY, a value a synced column refuses) is recorded the same way, as
 * `CONFLICT` or `CONSTRAINT_VIOLATION`. Any other exception is a transient
 * failure (nothing commits, the client retries).
 *
 * The body is synchronous on purpose: Durable Object SQL is synchronous, and a
 * transaction cannot stay open across an `await`.
 */
export interface ServerMutatorDefinition<Args extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined, Result = unknown, Auth = any, Env = any> {
  readonly args?: Args;
  readonly server: (ctx: MutationContext<Auth, Env>, args: Args extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<Args> : undefined) => Result;
}

/**
 * Declares a server mutator.
 *
 * ```ts
 * const send = defineMutator({
 *   args: v.object({ id: v.string(), channelId: v.string(), text: v.string() }),
 *   server: (ctx, { id, channelId, text }) =>
 *     ctx.db.insert("messages", { channelId, text, authorId: ctx.auth.userId }, { clientId: id }),
 * });
 * ```
 */
export function defineMutator<Args extends StandardSchemaV1 | undefined = undefined, Result = unknown, Auth = any, Env = any>(
  mutator: ServerMutatorDefinition<Args, Result, Auth, Env>,
): ServerMutatorDefinition<Args, Result, Auth, Env> {
  return mutator;
}

export const CLIENTS_TABLE = "__lunora_clients";
export const OUTCOMES_TABLE = "__lunora_outcomes";

/** Outcomes kept per (identity, clientId) for answering replays. */
export const OUTCOMES_KEPT_PER_CLIENT = 1_000;
/**
 * Writers (clientIds) remembered per identity. Past it, the least recently
 * used clientId of that identity is forgotten with its outcomes, so an
 * identity minting a fresh clientId per push cannot grow the room's storage
 * without bound. A forgotten clientId that writes again is a new writer: the
 * room expects clientSeq 1 (`OUT_OF_ORDER`) and the client fills the gap, so
 * a write of it that was applied but never acknowledged could run again.
 */
export const CLIENT_IDS_KEPT_PER_IDENTITY = 64;
/** A stored result larger than this is kept as `{ truncated: true }`. */
const MAX_STORED_RESULT_BYTES = 8 * 1024;

export function installWatermarkTables(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS ${CLIENTS_TABLE} (
    identity TEXT NOT NULL, client_id TEXT NOT NULL, watermark INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (identity, client_id)) WITHOUT ROWID`);
  sql.exec(`CREATE TABLE IF NOT EXISTS ${OUTCOMES_TABLE} (
    identity TEXT NOT NULL, client_id TEXT NOT NULL, client_seq INTEGER NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (identity, client_id, client_seq)) WITHOUT ROWID`);
}

/** The last clientSeq applied for (identity, clientId); 0 for a new writer. */
export function clientWatermark(sql: SqlStorage, identity: string, clientId: string): number {
  const row = sql.exec<{ watermark: number }>(`SELECT watermark FROM ${CLIENTS_TABLE} WHERE identity = ? AND client_id = ?`, identity, clientId).toArray()[0];
  return row?.watermark ?? 0;
}

/** Records `result` with the new watermark; returns the outcome as recorded (what a replay is answered), to be sent live too. */
function recordOutcome(sql: SqlStorage, identity: string, clientId: string, result: MutationResult): MutationResult {
  const known = sql.exec(`SELECT 1 FROM ${CLIENTS_TABLE} WHERE identity = ? AND client_id = ?`, identity, clientId).toArray().length > 0;
  if (!known) forgetLeastRecentWriters(sql, identity, CLIENT_IDS_KEPT_PER_IDENTITY - 1);
  sql.exec(
    `INSERT INTO ${CLIENTS_TABLE} (identity, client_id, watermark, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT(identity, client_id) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at`,
    identity,
    clientId,
    result.clientSeq,
    Date.now(),
  );
  let stored: string;
  let live = result;
  if (result.status === "applied") {
    // The live outcome keeps the whole result (bounded per frame when sent); a replay gets this.
    stored = JSON.stringify(result);
    if (stored.length > MAX_STORED_RESULT_BYTES) stored = JSON.stringify({ clientSeq: result.clientSeq, status: "applied", result: { truncated: true } });
  } else {
    ({ json: stored, outcome: live } = boundedOutcome(result, MAX_RECORDED_REJECTION_BYTES));
  }
  sql.exec(`INSERT OR REPLACE INTO ${OUTCOMES_TABLE} (identity, client_id, client_seq, outcome) VALUES (?, ?, ?, ?)`, identity, clientId, result.clientSeq, stored);
  sql.exec(`DELETE FROM ${OUTCOMES_TABLE} WHERE identity = ? AND client_id = ? AND client_seq <= ?`, identity, clientId, result.clientSeq - OUTCOMES_KEPT_PER_CLIENT);
  return live;
}

/** Keeps at most `keep` clientIds of an identity: the most recently used ones. */
function forgetLeastRecentWriters(sql: SqlStorage, identity: string, keep: number): void {
  const stale = sql
    .exec<{ client_id: string }>(
      `SELECT client_id FROM ${CLIENTS_TABLE} WHERE identity = ? ORDER BY updated_at DESC, client_id DESC LIMIT -1 OFFSET ?`,
      identity,
      keep,
    )
    .toArray();
  for (const { client_id } of stale) {
    sql.exec(`DELETE FROM ${CLIENTS_TABLE} WHERE identity = ? AND client_id = ?`, identity, client_id);
    sql.exec(`DELETE FROM ${OUTCOMES_TABLE} WHERE identity = ? AND client_id = ?`, identity, client_id);
  }
}

function storedOutcome(sql: SqlStorage, identity: string, clientId: string, clientSeq: number): MutationResult {
  const row = sql
    .exec<{ outcome: string }>(`SELECT outcome FROM ${OUTCOMES_TABLE} WHERE identity = ? AND client_id = ? AND client_seq = ?`, identity, clientId, clientSeq)
    .toArray()[0];
  // Applied long ago and its outcome pruned: it did run; its detail is gone.
  return row ? (JSON.parse(row.outcome) as MutationResult) : { clientSeq, status: "applied", result: { pruned: true } };
}

function transientError(clientSeq: number, error: ErrorBody): MutationResult {
  return { clientSeq, status: "error", error };
}

export interface PushContext {
  sql: SqlStorage;
  transactionSync: <T>(fn: () => T) => T;
  mutators: Record<string, ServerMutatorDefinition>;
  identity: string;
  clientId: string;
  makeContext: (clientId: string, clientSeq: number) => MutationContext;
}

/**
 * Applies one ordered batch of mutations of one writer, exactly once each:
 * a `clientSeq` at or below the watermark is answered from the stored outcome
 * without running; the next one runs; anything further is `OUT_OF_ORDER`.
 * After a transient failure the rest of the batch is not attempted (it would
 * be out of order); the client retries from the failed one.
 */
export async function applyPush(push: PushContext, mutations: Mutation[]): Promise<MutationResult[]> {
  const results: MutationResult[] = [];
  const { sql, identity, clientId } = push;
  for (let index = 0; index < mutations.length; index++) {
    const mutation = mutations[index];
    const definition = Object.hasOwn(push.mutators, mutation.name) ? push.mutators[mutation.name] : undefined;
    // Validate before the watermark check: validation may be async, and the
    // check must happen in the same synchronous step as the transaction.
    let args: unknown;
    let rejection: LunoraError | undefined;
    if (definition === undefined) {
      rejection = new LunoraError("UNKNOWN_MUTATOR", `unknown mutator "${mutation.name}"`);
    } else {
      try {
        args = await validateWithSchema(definition.args, mutation.args, `args of mutator "${mutation.name}"`);
      } catch (error) {
        rejection = error instanceof LunoraError ? error : new LunoraError("INVALID_ARGS", "invalid args");
      }
    }
    const watermark = clientWatermark(sql, identity, clientId);
    if (mutation.clientSeq <= watermark) {
      results.push(storedOutcome(sql, identity, clientId, mutation.clientSeq));
      continue;
    }
    if (mutation.clientSeq > watermark + 1) {
      for (const rest of mutations.slice(index)) {
        results.push(transientError(rest.clientSeq, { code: "OUT_OF_ORDER", message: `expected clientSeq ${watermark + 1}`, data: { expected: watermark + 1 } }));
      }
      break;
    }
    if (rejection !== undefined) {
      const result: MutationResult = { clientSeq: mutation.clientSeq, status: "rejected", error: rejection.toBody() };
      results.push(push.transactionSync(() => recordOutcome(sql, identity, clientId, result)));
      continue;
    }
    try {
      const result = push.transactionSync(() => {
        const value = definition!.server(push.makeContext(clientId, mutation.clientSeq), args as never);
        if (value !== null && typeof value === "object" && typeof (value as { then?: unknown }).then === "function") {
          throw new Error(`mutator "${mutation.name}" returned a promise; server mutators are synchronous`);
        }
        const applied: MutationResult = value === undefined ? { clientSeq: mutation.clientSeq, status: "applied" } : { clientSeq: mutation.clientSeq, status: "applied", result: value };
        return recordOutcome(sql, identity, clientId, applied);
      });
      results.push(result);
    } catch (error) {
      // A constraint failure (raw `ctx.sql`, or a deferred foreign key at
      // commit) fails the same way on every retry: it is a rejection too.
      const coded = error instanceof LunoraError ? error : constraintError(error);
      if (coded !== undefined) {
        // The body's writes rolled back; the rejection is the recorded outcome
        // and the watermark moves past it, so the writer is never wedged.
        const result: MutationResult = { clientSeq: mutation.clientSeq, status: "rejected", error: coded.toBody() };
        results.push(push.transactionSync(() => recordOutcome(sql, identity, clientId, result)));
        continue;
      }
      console.error(`lunora: mutator "${mutation.name}" failed`, error);
      results.push(transientError(mutation.clientSeq, { code: "INTERNAL", message: "the mutation failed on the server and will be retried" }));
      for (const rest of mutations.slice(index + 1)) {
        results.push(transientError(rest.clientSeq, { code: "INTERNAL", message: "not attempted: an earlier mutation of the batch failed" }));
      }
      break;
    }
  }
  return results;
}
