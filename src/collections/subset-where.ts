import type { IR, LoadSubsetOptions } from "@tanstack/db";
import { MAX_SUBSET_CHARS, MAX_SUBSET_LIMIT, type Subset, type SubsetLimit, type Where, type WhereScalar } from "../protocol/index.js";
import { canonicalJson } from "../cache/view-key.js";

/**
 * Compiling TanStack DB's `loadSubset` request into the room's {@link Subset}.
 *
 * The room can only evaluate its own `Where` language, so an expression it
 * cannot express is replaced by a WIDER one, never a narrower one: TanStack
 * DB filters, orders and cuts the loaded rows itself, so extra rows cost
 * bytes, while a missing row would be a wrong query result. The rules:
 *
 * - pushed down: `eq`, `gt`, `gte`, `lt`, `lte` (either argument order),
 *   `inArray`, `and`, `or`, `not`, `isNull`, `isUndefined` (a synced row has
 *   every projected column, so it is the constant `false`);
 * - an unsupported conjunct of an `and` is dropped (the rest still holds);
 *   an `or` with an unsupported item, and a `not` of anything not compiled
 *   exactly, are unsupported as a whole; unsupported at the top: no `where`;
 * - once anything was widened, the `limit` goes too: the first N rows of a
 *   wider set need not contain the first N of the query.
 *
 * Assumed: a column holds one kind of value (numbers, or text) and the
 * query compares it with constants of that kind. Across kinds TanStack DB
 * follows JavaScript's coercion (`"5" < 10`) and the room SQLite's type
 * order (numbers before text), which differ. Booleans are the exception
 * handled here: SQLite stores them as 0/1, so a comparison with `true` is
 * pushed down as a wider one (`= 1`) and never negated.
 */

/**
 * The room refuses a predicate deeper than 16 or with more than 100 bound
 * parameters (docs/protocol.md, "Subsets"). It nests the subset under its
 * own AND with the shape's `where` and the read rule, so the client keeps a
 * margin below both bounds; a deeper subset is widened instead of refused.
 */
const MAX_WHERE_DEPTH = 12;
const MAX_WHERE_PARAMETERS = 80;

/** A compiled predicate; `exact` is false when something in it was widened. */
interface Compiled {
  where: Where;
  exact: boolean;
}

type Expression = IR.BasicExpression<unknown>;

type ComparisonOp = "eq" | "gt" | "gte" | "lt" | "lte";

/**
 * TanStack's comparison functions, each named as the room's operator, → the
 * operator with its arguments swapped (`5 < x` is `x > 5`). Null prototype:
 * no other function name (`toString`…) finds an entry.
 */
const FLIPPED: Readonly<Record<string, ComparisonOp | undefined>> = Object.assign(Object.create(null), { eq: "eq", gt: "lt", gte: "lte", lt: "gt", lte: "gte" });

/** A predicate compiled without widening. */
const exactly = (where: Where): Compiled => ({ where, exact: true });

/**
 * The wire subset for one `loadSubset` request. `where` AND the cursor
 * (`whereCurrent` OR `whereFrom`) become the subset's `where`; `limit` (plus
 * `offset`) becomes an ordered cut on the leading `orderBy` column, counted
 * after the cursor. Whatever cannot be expressed exactly widens the load.
 *
 * @example
 * ```ts
 * compileSubset({ where: eq(new IR.PropRef(["listId"]), "l1"), orderBy, limit: 50 });
 * // { where: { listId: { eq: "l1" } }, limit: { count: 50, column: "rank" } }
 * ```
 */
export function compileSubset(options: Pick<LoadSubsetOptions, "where" | "orderBy" | "limit" | "offset" | "cursor">): Subset {
  const base = options.where === undefined ? exactly(true) : compileWhere(options.where);
  let exact = base !== undefined && base.exact;
  const parts: Where[] = base === undefined || base.where === true ? [] : [base.where];

  // The cursor: rows at or after the last loaded value of the leading column.
  let after: Where | undefined;
  if (options.cursor) {
    const from = compileWhere(options.cursor.whereFrom as Expression);
    const current = compileWhere(options.cursor.whereCurrent as Expression);
    if (from?.exact && current?.exact) {
      parts.push({ $or: [current.where, from.where] });
      after = from.where;
    } else exact = false; // the whole `where` is wider than where-after-cursor
  }

  const limit = exact ? compileLimit(options, after) : undefined;
  const subset: Subset = {};
  if (parts.length > 0) subset.where = parts.length === 1 ? parts[0] : { $and: parts };
  if (limit) subset.limit = limit;
  return fitToRoomBounds(subset, base);
}

/** The cache and refcount key of a subset: its canonical JSON. */
export function subsetKey(subset: Subset): string {
  return canonicalJson(subset);
}

function compileLimit(options: Pick<LoadSubsetOptions, "orderBy" | "limit" | "offset">, after: Where | undefined): SubsetLimit | undefined {
  const { limit, offset, orderBy } = options;
  if (limit === undefined || !orderBy || orderBy.length === 0) return undefined;
  const count = limit + (offset ?? 0);
  if (!Number.isInteger(count) || count < 1 || count > MAX_SUBSET_LIMIT) return undefined;
  const leading = orderBy[0]!;
  const column = columnOf(leading.expression as Expression);
  if (column === undefined) return undefined;
  const compare = leading.compareOptions;
  const cut: SubsetLimit = { count, column };
  if (compare.direction === "desc") cut.desc = true;
  if (compare.nulls === "last") cut.nullsLast = true;
  if (compare.stringSort === "lexical") cut.lexical = true;
  if (after !== undefined) cut.after = after;
  return cut;
}

/**
 * A subset the room would refuse for its size (4 KiB of JSON, depth 16, 100
 * parameters) is widened until it fits: first without its cut, then the
 * compiled `where` alone, then the whole shape.
 */
function fitToRoomBounds(subset: Subset, base: Compiled | undefined): Subset {
  if (fits(subset)) return subset;
  const candidates: Subset[] = [];
  if (subset.where !== undefined) candidates.push({ where: subset.where });
  if (base && base.where !== true) candidates.push({ where: base.where });
  for (const candidate of candidates) if (fits(candidate)) return candidate;
  return {};
}

function fits(subset: Subset): boolean {
  if (JSON.stringify(subset).length > MAX_SUBSET_CHARS) return false;
  const measure = { parameters: 0 };
  const depth = Math.max(depthOf(subset.where, measure), depthOf(subset.limit?.after, measure));
  return depth <= MAX_WHERE_DEPTH && measure.parameters <= MAX_WHERE_PARAMETERS;
}

/** Nesting depth of a `Where`, counting (over-counting, to stay safe) one parameter per scalar. */
function depthOf(where: unknown, measure: { parameters: number }): number {
  if (where === undefined || typeof where === "boolean") return 0;
  if (Array.isArray(where)) return Math.max(0, ...where.map((item) => depthOf(item, measure)));
  if (typeof where !== "object" || where === null) {
    measure.parameters++;
    return 0;
  }
  let deepest = 0;
  for (const [key, value] of Object.entries(where)) {
    if (key === "$and" || key === "$or" || key === "$not") deepest = Math.max(deepest, depthOf(value, measure));
    else if (typeof value === "object" && value !== null) measure.parameters += Object.keys(value).length;
    else measure.parameters++;
  }
  return deepest + 1;
}

/**
 * Compiles one TanStack expression to a `Where`; `undefined` when it cannot
 * be expressed (the caller widens).
 */
export function compileWhere(expression: Expression): Compiled | undefined {
  switch (expression.type) {
    case "val":
      // A constant condition (e.g. `or(isNull(x), false)` from a cursor).
      return typeof expression.value === "boolean" ? exactly(expression.value) : undefined;
    case "ref":
      return undefined; // truthiness of a column: not in the language
    case "func":
      return compileFunc(expression);
  }
}

function compileFunc(func: IR.Func<unknown>): Compiled | undefined {
  const args = func.args as Expression[];
  switch (func.name) {
    case "and":
    case "or": {
      const conjunction = func.name === "and";
      const items: Where[] = [];
      let exact = true;
      for (const arg of args) {
        const compiled = compileWhere(arg);
        if (!compiled) {
          if (!conjunction) return undefined; // dropping a disjunct would narrow
          exact = false; // dropping a conjunct only widens
          continue;
        }
        exact &&= compiled.exact;
        // `true` adds nothing to a conjunction.
        if (!conjunction || compiled.where !== true) items.push(compiled.where);
      }
      if (items.length === 0) return conjunction ? { where: true, exact } : undefined;
      return { where: items.length === 1 ? items[0]! : conjunction ? { $and: items } : { $or: items }, exact };
    }
    case "not": {
      if (args.length !== 1) return undefined;
      const compiled = compileWhere(args[0]!);
      // The negation of a widened predicate is a narrowed one.
      if (!compiled || !compiled.exact) return undefined;
      return exactly(typeof compiled.where === "boolean" ? !compiled.where : { $not: compiled.where });
    }
    case "isNull": {
      const column = args.length === 1 ? columnOf(args[0]!) : undefined;
      return column === undefined ? undefined : exactly(condition(column, { eq: null }));
    }
    case "isUndefined": {
      // Every synced row carries every column its shape projects (NULL as null).
      const column = args.length === 1 ? columnOf(args[0]!) : undefined;
      return column === undefined ? undefined : exactly(false);
    }
    case "in": {
      if (args.length !== 2) return undefined;
      const column = columnOf(args[0]!);
      const list = args[1]!;
      if (column === undefined || list.type !== "val" || !Array.isArray(list.value)) return undefined;
      const items: WhereScalar[] = [];
      for (const item of list.value as unknown[]) {
        // NULL never matches `in`, here as in TanStack DB: leave it out.
        if (item === null || item === undefined) continue;
        if (!isScalar(item)) return undefined;
        items.push(item);
      }
      if (items.length === 0) return exactly(false);
      return { where: condition(column, { in: items }), exact: !items.some((item) => typeof item === "boolean") };
    }
    default: {
      const flipped = FLIPPED[func.name];
      if (!flipped || args.length !== 2) return undefined;
      const [left, right] = args as [Expression, Expression];
      let column = columnOf(left);
      let value: Expression = right;
      let op = func.name as ComparisonOp;
      if (column === undefined) {
        column = columnOf(right);
        value = left;
        op = flipped;
      }
      if (column === undefined || value.type !== "val") return undefined;
      const scalar = value.value;
      // A comparison with NULL is never true in TanStack DB: not the room's IS NULL.
      if (!isScalar(scalar)) return undefined;
      if (op !== "eq" && typeof scalar === "boolean") return undefined;
      // SQLite has no booleans: the room compares `true` as 1, while TanStack
      // DB never finds `true` equal to a synced 1. Wider, so not to be negated.
      return { where: condition(column, { [op]: scalar }), exact: typeof scalar !== "boolean" };
    }
  }
}

/** `{ [column]: cond }` with a null prototype, so a column named `__proto__` stays a plain key. */
function condition(column: string, cond: Record<string, unknown>): Where {
  const where: Record<string, unknown> = Object.create(null);
  where[column] = cond;
  return where as Where;
}

/**
 * The column a reference names, or `undefined`. TanStack DB strips the
 * query's source alias before `loadSubset`, so a column is a one-segment
 * path; a longer path is a nested property the room cannot address.
 */
function columnOf(expression: Expression): string | undefined {
  if (expression.type !== "ref") return undefined;
  const path = expression.path;
  if (path.length !== 1) return undefined;
  const column = path[0]!;
  // `$and` / `$or` / `$not` are operators in a Where object, never columns.
  if (typeof column !== "string" || column.length === 0 || column.length > 128 || column.startsWith("$")) return undefined;
  return column;
}

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value));
}
