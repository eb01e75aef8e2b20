import { LunoraError } from "../src/protocol/errors.js";
import type { TableInfo } from "./change-log.js";
import { bindableValue, VALUE_OUT_OF_RANGE_MARKER } from "./values.js";
import { compileWhere, quoteIdent, whereToSql, type Where } from "./where.js";

/** UUID-shaped (any version): what a client may propose as a row id. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Row = Record<string, unknown>;

const CONSTRAINT_KINDS = ["UNIQUE", "PRIMARY KEY", "NOT NULL", "CHECK", "FOREIGN KEY"] as const;

/**
 * The coded form of an SQLite constraint failure, or `undefined` for any
 * other error. A constraint failure is deterministic: running the same write
 * on the same rows fails the same way, so it is a permanent rejection
 * (`CONFLICT` for UNIQUE / PRIMARY KEY, `CONSTRAINT_VIOLATION` for CHECK,
 * NOT NULL, FOREIGN KEY and values a synced column refuses), never a
 * transient failure a writer would retry forever.
 *
 * DO SQLite reports them as `Error`s whose message ends with
 * `: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_<KIND>)`.
 */
export function constraintError(error: unknown): LunoraError | undefined {
  if (!(error instanceof Error) || !error.message.includes("SQLITE_CONSTRAINT")) return undefined;
  const text = error.message.replace(/: SQLITE_CONSTRAINT.*$/s, "").slice(0, 300);
  if (text.startsWith(VALUE_OUT_OF_RANGE_MARKER)) {
    return new LunoraError("CONSTRAINT_VIOLATION", text.slice(VALUE_OUT_OF_RANGE_MARKER.length + 2), { constraint: "VALUE_RANGE" });
  }
  const kind = CONSTRAINT_KINDS.find((candidate) => text.startsWith(`${candidate} constraint failed`)) ?? "OTHER";
  return new LunoraError(kind === "UNIQUE" || kind === "PRIMARY KEY" ? "CONFLICT" : "CONSTRAINT_VIOLATION", text, { constraint: kind });
}

/** Runs one statement of `ctx.db`, turning a constraint failure into its coded error. */
function run<T>(statement: () => T): T {
  try {
    return statement();
  } catch (error) {
    throw constraintError(error) ?? error;
  }
}

/**
 * Row helpers over the synced tables. Every write goes through plain SQL, so
 * it is captured by the same triggers as the room's own writes; column names
 * are checked against the table (never taken from input unchecked) and values
 * are bound as parameters.
 *
 * ```ts
 * server: (ctx, { id, text }) => ctx.db.insert("messages", { text, authorId: ctx.auth.userId }, { clientId: id })
 * ```
 */
export class LunoraDb {
  constructor(
    private readonly sql: SqlStorage,
    private readonly tableInfo: (table: string) => TableInfo,
    private readonly afterWrite: () => void = () => {},
  ) {}

  private columnsOf(table: string, doc: Row): [TableInfo, string[]] {
    const info = this.tableInfo(table);
    const columns = Object.keys(doc).filter((column) => doc[column] !== undefined);
    for (const column of columns) {
      if (!info.columns.has(column)) throw new LunoraError("INVALID_ARGS", `table "${table}" has no column "${column.slice(0, 64)}"`);
    }
    return [info, columns];
  }

  /**
   * Inserts a row and returns its key. The key is, in order: `options.clientId`
   * (accepted only if UUID-shaped, so a client cannot pick a peer's key or a
   * crafted one), the doc's own key value, a new UUID for text keys, or the
   * key SQLite assigns. A key that exists already is `CONFLICT`: an insert
   * never overwrites.
   */
  insert<T extends Row>(table: string, doc: T, options: { clientId?: string } = {}): string | number {
    const info = this.tableInfo(table);
    const row: Row = { ...doc };
    if (options.clientId !== undefined) {
      if (typeof options.clientId !== "string" || !UUID.test(options.clientId)) {
        throw new LunoraError("INVALID_ARGS", "a client-proposed id must be a UUID");
      }
      row[info.key] = options.clientId.toLowerCase();
    } else if (row[info.key] === undefined && info.columns.get(info.key) !== "INTEGER") {
      row[info.key] = crypto.randomUUID();
    }
    const [, columns] = this.columnsOf(table, row);
    const sql = `INSERT INTO ${quoteIdent(table)} (${columns.map(quoteIdent).join(", ")}) VALUES (${columns.map(() => "?").join(", ")}) RETURNING ${quoteIdent(info.key)} AS k`;
    const values = columns.map((column) => bindableValue(table, column, row[column]));
    const key = run(() => this.sql.exec<{ k: string | number }>(sql, ...values).one().k);
    this.afterWrite();
    return key;
  }

  /** Updates the given fields of one row. `NOT_FOUND` if the row does not exist. */
  patch(table: string, id: string | number, fields: Row): void {
    const [info, columns] = this.columnsOf(table, fields);
    const settable = columns.filter((column) => column !== info.key);
    if (settable.length === 0) {
      if (this.get(table, id) === null) throw new LunoraError("NOT_FOUND", `no row "${id}" in "${table}"`);
      return;
    }
    const values = settable.map((column) => bindableValue(table, column, fields[column]));
    const cursor = run(() =>
      this.sql.exec(`UPDATE ${quoteIdent(table)} SET ${settable.map((column) => `${quoteIdent(column)} = ?`).join(", ")} WHERE ${quoteIdent(info.key)} = ?`, ...values, id),
    );
    if (cursor.rowsWritten === 0) throw new LunoraError("NOT_FOUND", `no row "${id}" in "${table}"`);
    this.afterWrite();
  }

  /** Replaces every non-key column of one row (columns missing from `doc` become NULL). */
  replace(table: string, id: string | number, doc: Row): void {
    const info = this.tableInfo(table);
    const full: Row = {};
    for (const column of info.columns.keys()) if (column !== info.key) full[column] = doc[column] ?? null;
    for (const column of Object.keys(doc)) {
      if (!info.columns.has(column)) throw new LunoraError("INVALID_ARGS", `table "${table}" has no column "${column.slice(0, 64)}"`);
    }
    this.patch(table, id, full);
  }

  /** Deletes one row. Returns whether it existed. */
  delete(table: string, id: string | number): boolean {
    const info = this.tableInfo(table);
    const cursor = run(() => this.sql.exec(`DELETE FROM ${quoteIdent(table)} WHERE ${quoteIdent(info.key)} = ?`, id));
    if (cursor.rowsWritten > 0) this.afterWrite();
    return cursor.rowsWritten > 0;
  }

  get<T extends Row = Row>(table: string, id: string | number): T | null {
    const info = this.tableInfo(table);
    return (this.sql.exec(`SELECT * FROM ${quoteIdent(table)} WHERE ${quoteIdent(info.key)} = ?`, id).toArray()[0] as T | undefined) ?? null;
  }

  /** Rows matching a predicate (the same `Where` language as shapes). */
  query<T extends Row = Row>(table: string, where: Where = true, options: { orderBy?: string; desc?: boolean; limit?: number } = {}): T[] {
    const info = this.tableInfo(table);
    const { sql, params } = whereToSql(compileWhere(where, info.columns));
    let statement = `SELECT * FROM ${quoteIdent(table)} WHERE ${sql}`;
    if (options.orderBy !== undefined) {
      if (!info.columns.has(options.orderBy)) throw new LunoraError("INVALID_ARGS", `table "${table}" has no column "${options.orderBy.slice(0, 64)}"`);
      statement += ` ORDER BY ${quoteIdent(options.orderBy)} ${options.desc ? "DESC" : "ASC"}`;
    }
    if (options.limit !== undefined) statement += ` LIMIT ${Math.max(0, Math.floor(options.limit))}`;
    return this.sql.exec(statement, ...params).toArray() as T[];
  }
}
