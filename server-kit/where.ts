import { LunoraError } from "../src/protocol/errors.js";
import { isBlobValue } from "./values.js";

import type { Where } from "../src/protocol/where.js";

export type { Where, WhereCondition, WhereObject, WhereScalar } from "../src/protocol/where.js";

/** SQLite's limit on bound parameters per statement in Durable Objects. */
export const MAX_BOUND_PARAMETERS = 100;

const OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in"] as const;
type Operator = (typeof OPERATORS)[number];

/** A predicate checked against the table's columns: the only form the room evaluates. */
export type CompiledWhere =
  | { kind: "const"; value: boolean }
  | { kind: "and" | "or"; items: CompiledWhere[] }
  | { kind: "not"; item: CompiledWhere }
  | { kind: "cmp"; column: string; op: Operator; value: SqlValue | SqlValue[] };

type SqlValue = string | number | null;

/** SQLite column affinity, from the declared type (https://sqlite.org/datatype3.html §3.1). */
export type Affinity = "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC";

export function affinityOf(declaredType: string): Affinity {
  const type = declaredType.toUpperCase();
  if (type.includes("INT")) return "INTEGER";
  if (type.includes("CHAR") || type.includes("CLOB") || type.includes("TEXT")) return "TEXT";
  if (type === "" || type.includes("BLOB")) return "BLOB";
  if (type.includes("REAL") || type.includes("FLOA") || type.includes("DOUB")) return "REAL";
  return "NUMERIC";
}

const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * Normalizes a predicate value the way SQLite would when comparing it with a
 * column: booleans are integers, and the column's affinity is applied (a TEXT
 * column compares `5` as `"5"`). Doing it here once makes the JavaScript
 * evaluation agree with the SQL one.
 */
function normalizeScalar(value: unknown, column: string, affinity: Affinity): SqlValue {
  if (value === null || value === undefined) return null;
  let scalar: SqlValue;
  if (typeof value === "boolean") scalar = value ? 1 : 0; // SQLite has no booleans
  else if (typeof value === "string") scalar = value;
  else if (typeof value === "number" && Number.isFinite(value)) scalar = value;
  else throw new LunoraError("INVALID_ARGS", `predicate value for column "${column}" must be a string, number, boolean or null`);
  if (affinity === "TEXT" && typeof scalar === "number") return String(scalar);
  if ((affinity === "INTEGER" || affinity === "REAL" || affinity === "NUMERIC") && typeof scalar === "string") {
    // SQLite converts only decimal literals (not "0x10", not "Infinity").
    if (DECIMAL.test(scalar)) return Number(scalar);
  }
  return scalar;
}

/**
 * Checks a predicate against the table's column allow-list and normalizes its
 * values. A column that the table does not have is refused, so no predicate
 * (even one built from client args) can name anything else.
 */
export function compileWhere(where: Where, columns: ReadonlyMap<string, Affinity>): CompiledWhere {
  let parameters = 0;
  const visit = (node: Where, depth: number): CompiledWhere => {
    if (depth > 16) throw new LunoraError("INVALID_ARGS", "predicate is nested too deeply");
    if (node === true || node === false) return { kind: "const", value: node };
    if (typeof node !== "object" || node === null || Array.isArray(node)) {
      throw new LunoraError("INVALID_ARGS", "predicate must be an object or a boolean");
    }
    const items: CompiledWhere[] = [];
    for (const [key, raw] of Object.entries(node)) {
      if (raw === undefined) continue;
      if (key === "$and" || key === "$or") {
        if (!Array.isArray(raw)) throw new LunoraError("INVALID_ARGS", `${key} takes an array`);
        items.push({ kind: key === "$and" ? "and" : "or", items: raw.map((item) => visit(item as Where, depth + 1)) });
        continue;
      }
      if (key === "$not") {
        items.push({ kind: "not", item: visit(raw as Where, depth + 1) });
        continue;
      }
      const affinity = columns.get(key);
      if (affinity === undefined) throw new LunoraError("INVALID_ARGS", `unknown column "${key.slice(0, 64)}" in predicate`);
      if (raw === null || typeof raw !== "object") {
        parameters += raw === null ? 0 : 1;
        items.push({ kind: "cmp", column: key, op: "eq", value: normalizeScalar(raw, key, affinity) });
        continue;
      }
      for (const [op, operand] of Object.entries(raw as Record<string, unknown>)) {
        if (operand === undefined) continue;
        if (!(OPERATORS as readonly string[]).includes(op)) {
          throw new LunoraError("INVALID_ARGS", `unknown operator "${op.slice(0, 32)}" on column "${key}"`);
        }
        if (op === "in") {
          if (!Array.isArray(operand)) throw new LunoraError("INVALID_ARGS", `"in" on column "${key}" takes an array`);
          parameters += 1;
          items.push({ kind: "cmp", column: key, op: "in", value: operand.map((item) => normalizeScalar(item, key, affinity)) });
        } else {
          const value = normalizeScalar(operand, key, affinity);
          if (value !== null) parameters += 1;
          items.push({ kind: "cmp", column: key, op: op as Operator, value });
        }
      }
    }
    if (items.length === 0) return { kind: "const", value: true };
    return items.length === 1 ? items[0] : { kind: "and", items };
  };
  const compiled = visit(where, 0);
  if (parameters > MAX_BOUND_PARAMETERS) {
    throw new LunoraError("INVALID_ARGS", `predicate needs ${parameters} bound parameters; the limit is ${MAX_BOUND_PARAMETERS}`);
  }
  return compiled;
}

/** `AND` of predicates, folding constants. */
export function andWhere(...items: CompiledWhere[]): CompiledWhere {
  const kept: CompiledWhere[] = [];
  for (const item of items) {
    if (item.kind === "const") {
      if (!item.value) return item;
      continue;
    }
    kept.push(item);
  }
  if (kept.length === 0) return { kind: "const", value: true };
  return kept.length === 1 ? kept[0] : { kind: "and", items: kept };
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * An `in` list travels as one JSON parameter, and SQLite's JSON number
 * parser is not correctly rounded for doubles of large or small magnitude
 * (-3.536552790332434e-287 parses one ulp off), so the SQL would compare
 * against another number than JavaScript does. A number that is not a safe
 * integer is sent as `[m, k]` (m × 2^-k, m a 53-bit integer, from the
 * double's bits) and rebuilt in SQL by exact power-of-two scaling.
 */
function inListItem(item: SqlValue): SqlValue | [number, number] {
  if (typeof item !== "number" || Number.isSafeInteger(item) || item === 0) return item;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, item);
  const high = view.getUint32(0);
  const exponent = (high >>> 20) & 0x7ff;
  const fraction = (high & 0xfffff) * 2 ** 32 + view.getUint32(4);
  const sign = high >>> 31 === 1 ? -1 : 1;
  // Subnormal: fraction × 2^-1074; normal: (2^52 + fraction) × 2^(exponent - 1075).
  return exponent === 0 ? [sign * fraction, 1074] : [sign * (2 ** 52 + fraction), 1075 - exponent];
}

const IN_LIST_VALUE_SQL =
  `CASE WHEN type = 'array' THEN json_extract(value, '$[0]') * pow(2, -(json_extract(value, '$[1]') / 2)) * pow(2, -(json_extract(value, '$[1]') - json_extract(value, '$[1]') / 2)) ELSE value END`;

/** Renders a checked predicate as SQL with `?` placeholders. */
export function whereToSql(where: CompiledWhere): { sql: string; params: SqlValue[] } {
  const params: SqlValue[] = [];
  const render = (node: CompiledWhere): string => {
    switch (node.kind) {
      case "const":
        return node.value ? "1" : "0";
      case "and":
      case "or":
        return `(${node.items.map(render).join(node.kind === "and" ? " AND " : " OR ")})`;
      case "not":
        return `(NOT ${render(node.item)})`;
      case "cmp": {
        const col = quoteIdent(node.column);
        if (node.op === "in") {
          params.push(JSON.stringify((node.value as SqlValue[]).filter((item) => item !== null).map(inListItem)));
          return `${col} IN (SELECT ${IN_LIST_VALUE_SQL} FROM json_each(?))`;
        }
        const value = node.value as SqlValue;
        if (node.op === "eq" || node.op === "ne") {
          if (value === null) return node.op === "eq" ? `${col} IS NULL` : `${col} IS NOT NULL`;
          params.push(value);
          return node.op === "eq" ? `${col} = ?` : `${col} IS NOT ?`;
        }
        if (value === null) return "0"; // comparisons with NULL are never true
        params.push(value);
        const sqlOp = { gt: ">", gte: ">=", lt: "<", lte: "<=" }[node.op];
        return `${col} ${sqlOp} ?`;
      }
    }
  };
  return { sql: render(where), params };
}

/**
 * Text order of SQLite's BINARY collation: UTF-8 bytes, which is code point
 * order. JavaScript's `<` compares UTF-16 code units, which puts an astral
 * character (a surrogate pair, 0xD800–0xDBFF first) before U+E000–U+FFFF; a
 * predicate like `{ name: { lt: "\uFFFF" } }` then admitted an emoji in
 * JavaScript that SQL refused. A lone surrogate counts as its own code
 * point, as SQLite stores it (three bytes, CESU-style).
 */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  let i = 0;
  while (i < length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === length) return a.length - b.length;
  // Differing low surrogates after an equal high one: compare the whole pair.
  const previous = i > 0 ? a.charCodeAt(i - 1) : 0;
  if (previous >= 0xd800 && previous <= 0xdbff) i--;
  return a.codePointAt(i)! - b.codePointAt(i)!;
}

/** A BLOB in predicate evaluation: its bytes as uppercase hex, whose string order is byte (memcmp) order. */
class BlobOperand {
  constructor(readonly hex: string) {}
}

type Operand = SqlValue | BlobOperand;

/**
 * SQLite's ordering of values of different storage classes: NULL < numbers
 * (INTEGER and REAL compare by value) < TEXT (by code point) < BLOB (by
 * bytes). https://sqlite.org/datatype3.html#sort_order
 */
export function compareSqlite(a: Operand, b: Operand): number {
  const rank = (value: Operand) => (value === null ? 0 : typeof value === "number" ? 1 : typeof value === "string" ? 2 : 3);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (a === null || b === null) return 0;
  if (typeof a === "number") return a - (b as number);
  if (typeof a === "string") return compareText(a, b as string);
  const x = (a as BlobOperand).hex;
  const y = (b as BlobOperand).hex;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A column of a row image (see `values.ts`) as SQLite would compare it. */
function readColumn(row: Record<string, unknown>, column: string): Operand {
  const value = row[column];
  if (value === undefined || value === null) return null;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value === "number" || typeof value === "string") return value;
  if (isBlobValue(value)) return new BlobOperand(value.$blob.toUpperCase());
  return JSON.stringify(value);
}

/**
 * SQL's three-valued logic: a comparison with NULL is neither true nor false
 * but unknown, and `NOT unknown` is still unknown. Without it,
 * `{ $not: { a: 1 } }` would match a row whose `a` is NULL in JavaScript but
 * not in SQLite.
 */
type Truth = boolean | null;

function evaluate(where: CompiledWhere, row: Record<string, unknown>): Truth {
  switch (where.kind) {
    case "const":
      return where.value;
    case "and": {
      let unknown = false;
      for (const item of where.items) {
        const value = evaluate(item, row);
        if (value === false) return false;
        if (value === null) unknown = true;
      }
      return unknown ? null : true;
    }
    case "or": {
      let unknown = false;
      for (const item of where.items) {
        const value = evaluate(item, row);
        if (value === true) return true;
        if (value === null) unknown = true;
      }
      return unknown ? null : false;
    }
    case "not": {
      const value = evaluate(where.item, row);
      return value === null ? null : !value;
    }
    case "cmp": {
      const actual = readColumn(row, where.column);
      if (where.op === "in") {
        // NULLs are left out of the list (see whereToSql); `x IN ()` is false even for NULL x.
        const list = (where.value as SqlValue[]).filter((item) => item !== null);
        if (list.length === 0) return false;
        if (actual === null) return null;
        return list.some((item) => compareSqlite(actual, item) === 0);
      }
      const expected = where.value as SqlValue;
      // `IS NULL`, `IS NOT NULL` and `IS NOT ?` are never unknown.
      if (where.op === "eq" && expected === null) return actual === null;
      if (where.op === "ne") return expected === null ? actual !== null : actual === null || compareSqlite(actual, expected) !== 0;
      if (expected === null) return false; // rendered as the constant 0
      if (actual === null) return null;
      const order = compareSqlite(actual, expected);
      switch (where.op) {
        case "eq":
          return order === 0;
        case "gt":
          return order > 0;
        case "gte":
          return order >= 0;
        case "lt":
          return order < 0;
        case "lte":
          return order <= 0;
      }
    }
  }
  return false;
}

/** Evaluates a checked predicate against a row image, with the same meaning as {@link whereToSql}. */
export function matchesWhere(where: CompiledWhere, row: Record<string, unknown>): boolean {
  return evaluate(where, row) === true;
}
