/**
 * Subsets (on-demand sync): a subscription that reads only part of a shape.
 *
 * A subset is a predicate in the room's own `Where` language over the
 * columns the subscription projects. The room ANDs it with the shape's
 * `where` and the table's `read` rule (see `resolveSubscription`), so a
 * subset is evaluated by the same two engines as everything else — SQL for
 * snapshots, JavaScript for membership diffs — and the room keeps no
 * per-subset state beyond that predicate in the socket's attachment.
 *
 * A `limit` ("the first `count` rows by `column`") is not a predicate the
 * engines can evaluate incrementally, so it is resolved once, at subscribe
 * time: the room reads the `count`-th row's value at the subscribe's cut and
 * the subset becomes `where AND column up to that value, ties included`
 * ({@link throughBoundary}). That resolved predicate is what the socket
 * stores and the client resumes with, so the subset names the same rows
 * across reconnects, hibernation, resets and restarts. Whenever the cut
 * cannot be expressed exactly (locale-ordered text, BLOBs, a predicate that
 * would grow past the subset bounds), the subset is `where` alone: a wider
 * load, never a narrower one.
 */
import * as v from "valibot";
import { LunoraError, MAX_SUBSET_CHARS, subsetSchema, type Subset, type SubsetLimit } from "../src/protocol/index.js";
import type { Where, WhereScalar } from "../src/protocol/where.js";
import type { TableInfo } from "./change-log.js";
import { SNAPSHOT_PAGE_PARAMETERS } from "./snapshots.js";
import { MAX_BOUND_PARAMETERS, andWhere, compileWhere, quoteIdent, whereToSql, type Affinity, type CompiledWhere } from "./where.js";

/**
 * JSON nesting past which a subset is refused before anything walks it
 * recursively (`JSON.stringify`, the schema). A `Where` deeper than 16 is
 * refused anyway by `compileWhere`; this bound only protects the walkers
 * from a frame that is one megabyte of `[[[[`.
 */
const MAX_SUBSET_JSON_DEPTH = 64;

const invalid = (message: string) => new LunoraError("INVALID_ARGS", `subset: ${message}`);

/**
 * Checks a client's raw `subscribe.subset`: bounded depth and size first
 * (iteratively, so nothing recursive sees a hostile value), then its shape.
 * Throws `INVALID_ARGS`.
 */
export function parseSubset(raw: unknown): Subset {
  const stack: Array<[unknown, number]> = [[raw, 0]];
  let nodes = 0;
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (depth > MAX_SUBSET_JSON_DEPTH) throw invalid(`nested deeper than ${MAX_SUBSET_JSON_DEPTH}`);
    // Every node takes at least one character of JSON: past the bound in
    // nodes, it is past the bound in characters without serializing it.
    if (++nodes > MAX_SUBSET_CHARS) throw invalid(`larger than ${MAX_SUBSET_CHARS} characters of JSON`);
    if (typeof value === "object" && value !== null) {
      for (const child of Object.values(value)) stack.push([child, depth + 1]);
    }
  }
  if (JSON.stringify(raw).length > MAX_SUBSET_CHARS) throw invalid(`larger than ${MAX_SUBSET_CHARS} characters of JSON`);
  const result = v.safeParse(subsetSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const path = issue.path?.map((step) => String(step.key)).join(".") ?? "";
    throw invalid(`${path ? `${path}: ` : ""}${issue.message}`);
  }
  return result.output;
}

/**
 * The columns a subset may name: only those the subscription projects. A
 * hidden column used as a filter or a sort key would reveal itself through
 * which rows arrive.
 */
export function projectedColumns(info: TableInfo, columns: readonly string[]): Map<string, Affinity> {
  return new Map(columns.map((column) => [column, info.columns.get(column)!]));
}

/** Compiles a subset's predicate against the projected columns only. Throws `INVALID_ARGS`. */
export function compileSubsetWhere(where: unknown, projected: ReadonlyMap<string, Affinity>): CompiledWhere {
  return compileWhere(where as Where, projected);
}

/** Bound parameters a subscription's whole predicate may use: a snapshot page binds its own on top. */
export const MAX_PREDICATE_PARAMETERS = MAX_BOUND_PARAMETERS - SNAPSHOT_PAGE_PARAMETERS;

/**
 * A statement takes at most {@link MAX_BOUND_PARAMETERS}. `compileWhere`
 * bounds each predicate on its own; a subscription ANDs the read rule, the
 * shape's `where` and its subset, and a snapshot page binds one more, so
 * the sum is checked here (else the snapshot's SQL failed in SQLite with
 * "too many SQL variables", an INTERNAL error, instead of being refused with
 * a code).
 */
export function checkParameters(where: CompiledWhere): void {
  const count = whereToSql(where).params.length;
  if (count > MAX_PREDICATE_PARAMETERS) {
    throw new LunoraError("INVALID_ARGS", `the subscription's predicate needs ${count} bound parameters; the limit is ${MAX_PREDICATE_PARAMETERS}`);
  }
}

/** What a subscription must know to resolve its limit: the rows the boundary is counted over. */
export interface LimitPlan {
  limit: SubsetLimit;
  table: string;
  /** The subscription's predicate (shape ∧ read ∧ subset.where) ∧ `limit.after`. */
  countedOver: CompiledWhere;
}

/**
 * Checks a subset's `limit` against the subscription before anything is
 * flushed or read: its column and the columns of `after` must be projected.
 * Throws `INVALID_ARGS`.
 */
export function planLimit(sub: { table: string; where: CompiledWhere }, limit: SubsetLimit, projected: ReadonlyMap<string, Affinity>): LimitPlan {
  if (!projected.has(limit.column)) throw invalid(`limit column "${limit.column.slice(0, 64)}" is not a column of this subscription`);
  const after = limit.after === undefined ? undefined : compileSubsetWhere(limit.after, projected);
  const countedOver = after === undefined ? sub.where : andWhere(sub.where, after);
  checkParameters(countedOver);
  return { limit, table: sub.table, countedOver };
}

/**
 * The `count`-th row's value of the limit column, in the requested order,
 * among the rows the plan counts over; `undefined` when fewer rows match.
 * Read at the subscribe's cut (right after the flush that starts the
 * snapshot), so the boundary and the snapshot see the same rows.
 */
export function readBoundary(sql: SqlStorage, plan: LimitPlan): { value: SqlStorageValue } | undefined {
  const { limit } = plan;
  const { sql: predicate, params } = whereToSql(plan.countedOver);
  const column = quoteIdent(limit.column);
  // Defaults follow TanStack DB: ascending, NULLs first.
  const order = `${limit.desc ? "DESC" : "ASC"} NULLS ${limit.nullsLast ? "LAST" : "FIRST"}`;
  // count is a validated integer in [1, MAX_SUBSET_LIMIT]: inlined, it costs no bound parameter.
  const rows = sql
    .exec(`SELECT ${column} AS boundary FROM ${quoteIdent(plan.table)} WHERE (${predicate}) ORDER BY ${column} ${order} LIMIT 1 OFFSET ${limit.count - 1}`, ...params)
    .toArray();
  return rows.length === 0 ? undefined : { value: rows[0].boundary };
}

/**
 * "`column` up to `value`, ties included" in the requested order, as a
 * `Where`; `true` when every row is within it (NULL boundary with NULLs
 * last: every non-NULL row comes first). `undefined` when the cut cannot be
 * expressed exactly: text under locale order (the client's order is not
 * SQLite's), a BLOB, a number JSON cannot carry.
 */
export function throughBoundary(limit: SubsetLimit, value: SqlStorageValue): Where | undefined {
  const column = limit.column;
  if (value === null) return limit.nullsLast ? true : { [column]: null };
  if (value instanceof ArrayBuffer) return undefined;
  if (typeof value === "string" && limit.lexical !== true) return undefined;
  if (typeof value === "number" && !Number.isFinite(value)) return undefined;
  const bound: WhereScalar = value as string | number;
  const upTo = { [column]: limit.desc ? { gte: bound } : { lte: bound } } as Where;
  return limit.nullsLast ? upTo : { $or: [{ [column]: null } as Where, upTo] };
}

/**
 * The predicate a limited subset resolves to: `where ∧ through(boundary)`,
 * or `where` alone (`true` when none) when there is no boundary row or no
 * exact cut. The caller still checks that the result compiles and fits
 * (else it falls back to `where` alone, the wider set).
 */
export function cutWhere(where: unknown, limit: SubsetLimit, boundary: { value: SqlStorageValue } | undefined): Where {
  const base = (where ?? true) as Where;
  if (boundary === undefined) return base;
  const through = throughBoundary(limit, boundary.value);
  if (through === undefined || through === true) return base;
  return base === true ? through : { $and: [base, through] };
}

/** Whether a resolved predicate can travel back in a resume (`subset: { where }`) within the subset bound. */
export function fitsAsSubset(where: Where): boolean {
  return JSON.stringify({ where }).length <= MAX_SUBSET_CHARS;
}

/**
 * Resolves a subset's limit, at the subscribe's cut, into the predicate the
 * subset stands for from now on and the subscription for it. `resolve`
 * resolves the subscription with another subset predicate; `sub` is the one
 * already resolved with `where` alone. A cut whose predicate would not fit a
 * resume (`MAX_SUBSET_CHARS`, bound parameters, depth) is dropped: the
 * subset is then `where` alone, the wider set.
 */
export function resolveLimitedSubset<Sub>(
  sql: SqlStorage,
  plan: LimitPlan,
  where: unknown,
  sub: Sub,
  resolve: (where: Where) => Sub,
): { where: Where; resolved: Sub } {
  const base = (where ?? true) as Where;
  const cut = cutWhere(where, plan.limit, readBoundary(sql, plan));
  if (cut !== base && fitsAsSubset(cut)) {
    try {
      return { where: cut, resolved: resolve(cut) };
    } catch (error) {
      if (!(error instanceof LunoraError) || error.code !== "INVALID_ARGS") throw error;
    }
  }
  return { where: base, resolved: sub };
}
