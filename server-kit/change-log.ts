import { quoteIdent, affinityOf, type Affinity } from "./where.js";

/**
 * The change log and its bookkeeping, all in the room's own SQLite.
 *
 * `__cdc_log` is filled by triggers installed on every synced table, so a row
 * lands in the log in the same statement (hence the same transaction) as the
 * write, whoever made it: `ctx.db`, a mutator, or the room's own raw
 * `sql.exec`. `seq` is AUTOINCREMENT, so it only goes up, even after trims.
 *
 * Beyond the columns of the design (`seq, ts, table, id, op, doc`) each entry
 * keeps `prev`, the pre-image of an update or delete: membership diffs need
 * to know whether a row was in a shape before the change, and a pre-image is
 * the only way to know that without a query per subscriber.
 */
export const LOG_TABLE = "__cdc_log";
export const META_TABLE = "__lunora_meta";
const TRIGGER_PREFIX = "__lunora_cdc_";

export interface LogEntry {
  seq: number;
  table: string;
  op: "insert" | "update" | "delete";
  doc: Record<string, unknown> | null;
  prev: Record<string, unknown> | null;
}

export interface TableInfo {
  name: string;
  key: string;
  columns: Map<string, Affinity>;
}

/** Creates the log and meta tables. Idempotent, cheap enough to run on every wake. */
export function installLogTables(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS ${LOG_TABLE} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    "table" TEXT NOT NULL,
    id TEXT NOT NULL,
    op TEXT NOT NULL,
    doc TEXT,
    prev TEXT
  )`);
  sql.exec(`CREATE TABLE IF NOT EXISTS ${META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
}

export function readMeta(sql: SqlStorage, key: string): string | undefined {
  const row = sql.exec<{ value: string }>(`SELECT value FROM ${META_TABLE} WHERE key = ?`, key).toArray()[0];
  return row?.value;
}

export function writeMeta(sql: SqlStorage, key: string, value: string | number): void {
  sql.exec(`INSERT INTO ${META_TABLE} (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, String(value));
}

/** Reads a table's columns, or `undefined` when the table does not exist (yet). */
export function readTableInfo(sql: SqlStorage, table: string, key: string): TableInfo | undefined {
  const rows = sql.exec<{ name: string; type: string }>(`SELECT name, type FROM pragma_table_info(?)`, table).toArray();
  if (rows.length === 0) return undefined;
  return { name: table, key, columns: new Map(rows.map((row) => [row.name, affinityOf(row.type ?? "")])) };
}

/**
 * SQL for the JSON image of a row (`NEW` or `OLD`). BLOB values become hex
 * text: `json_object` refuses BLOBs, and a trigger that fails would make the
 * room's own write fail. Wide tables are built in chunks because SQLite caps
 * a function call at 127 arguments.
 */
function imageSql(info: TableInfo, alias: "NEW" | "OLD"): string {
  const value = (column: string) => {
    const ref = `${alias}.${quoteIdent(column)}`;
    return `CASE typeof(${ref}) WHEN 'blob' THEN hex(${ref}) ELSE ${ref} END`;
  };
  const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
  const columns = [...info.columns.keys()];
  const chunks: string[][] = [];
  for (let i = 0; i < columns.length; i += 60) chunks.push(columns.slice(i, i + 60));
  let expr = `json_object(${chunks[0].map((column) => `${literal(column)}, ${value(column)}`).join(", ")})`;
  for (const chunk of chunks.slice(1)) {
    expr = `json_insert(${expr}, ${chunk.map((column) => `${literal(`$."${column.replaceAll('"', '""')}"`)}, ${value(column)}`).join(", ")})`;
  }
  return expr;
}

/** A fingerprint of the columns the triggers were generated for. */
function schemaSignature(info: TableInfo): string {
  return `${info.key}|${[...info.columns].map(([name, affinity]) => `${name}:${affinity}`).join(",")}`;
}

/**
 * Installs (or re-installs after a schema change) the capture triggers of one
 * synced table. Returns false when nothing had to change.
 */
export function installCaptureTriggers(sql: SqlStorage, info: TableInfo): boolean {
  const signature = schemaSignature(info);
  const metaKey = `triggers:${info.name}`;
  if (readMeta(sql, metaKey) === signature) return false;
  const table = quoteIdent(info.name);
  const name = (op: string) => quoteIdent(`${TRIGGER_PREFIX}${info.name}_${op}`);
  const tableLiteral = `'${info.name.replaceAll("'", "''")}'`;
  const key = quoteIdent(info.key);
  const now = `((julianday('now') - 2440587.5) * 86400000.0)`;
  for (const op of ["insert", "update", "delete"]) sql.exec(`DROP TRIGGER IF EXISTS ${name(op)}`);
  sql.exec(`CREATE TRIGGER ${name("insert")} AFTER INSERT ON ${table} BEGIN
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, NEW.${key}, 'insert', ${imageSql(info, "NEW")}, NULL);
  END`);
  sql.exec(`CREATE TRIGGER ${name("update")} AFTER UPDATE ON ${table} BEGIN
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, NEW.${key}, 'update', ${imageSql(info, "NEW")}, ${imageSql(info, "OLD")});
  END`);
  sql.exec(`CREATE TRIGGER ${name("delete")} AFTER DELETE ON ${table} BEGIN
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, OLD.${key}, 'delete', NULL, ${imageSql(info, "OLD")});
  END`);
  writeMeta(sql, metaKey, signature);
  return true;
}

export function maxLogSeq(sql: SqlStorage): number {
  const row = sql.exec<{ seq: number | null }>(`SELECT max(seq) AS seq FROM ${LOG_TABLE}`).one();
  return row.seq ?? 0;
}

export function countLogRows(sql: SqlStorage, afterSeq: number, throughSeq: number): number {
  return sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${LOG_TABLE} WHERE seq > ? AND seq <= ?`, afterSeq, throughSeq).one().n;
}

/** Reads log entries with `afterSeq < seq <= throughSeq`, in order, page by page. */
export function* readLog(sql: SqlStorage, afterSeq: number, throughSeq: number, pageSize = 1_000): Generator<LogEntry> {
  let from = afterSeq;
  while (from < throughSeq) {
    const rows = sql
      .exec<{ seq: number; table: string; op: string; doc: string | null; prev: string | null }>(
        `SELECT seq, "table", op, doc, prev FROM ${LOG_TABLE} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
        from,
        throughSeq,
        pageSize,
      )
      .toArray();
    if (rows.length === 0) return;
    for (const row of rows) {
      yield {
        seq: row.seq,
        table: row.table,
        op: row.op as LogEntry["op"],
        doc: row.doc === null ? null : (JSON.parse(row.doc) as Record<string, unknown>),
        prev: row.prev === null ? null : (JSON.parse(row.prev) as Record<string, unknown>),
      };
    }
    from = rows[rows.length - 1].seq;
  }
}

/**
 * One key's net change over a stretch of the log: its image before the
 * stretch (`before`, null if it did not exist) and after it (`after`, null if
 * it no longer exists). Coalescing is what makes a resume cost one op per
 * changed key however many times the key changed.
 */
export interface KeyChange {
  table: string;
  key: string | number;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

/**
 * Folds log entries into one {@link KeyChange} per (table, key), in order of
 * each key's last change. An update that changed the key column counts as a
 * delete of the old key and an insert of the new one.
 */
export function coalesceLog(entries: Iterable<LogEntry>, keys: ReadonlyMap<string, string>, limit = Infinity): Map<string, KeyChange> | undefined {
  const changes = new Map<string, KeyChange>();
  const apply = (table: string, key: string | number, before: Record<string, unknown> | null, after: Record<string, unknown> | null) => {
    const id = `${table}\u0000${typeof key}\u0000${key}`;
    const existing = changes.get(id);
    if (existing) {
      changes.delete(id); // re-insert to keep "order of last change"
      changes.set(id, { table, key, before: existing.before, after });
    } else {
      changes.set(id, { table, key, before, after });
    }
  };
  for (const entry of entries) {
    const keyColumn = keys.get(entry.table);
    if (keyColumn === undefined) continue; // a table that is no longer synced
    const newKey = entry.doc?.[keyColumn] as string | number | undefined;
    const oldKey = entry.prev?.[keyColumn] as string | number | undefined;
    if (entry.op === "update" && oldKey !== undefined && newKey !== undefined && oldKey !== newKey) {
      apply(entry.table, oldKey, entry.prev, null);
      apply(entry.table, newKey, null, entry.doc);
    } else {
      const key = newKey ?? oldKey;
      if (key === undefined || key === null) continue;
      apply(entry.table, key, entry.prev, entry.doc);
    }
    if (changes.size > limit) return undefined;
  }
  return changes;
}

/**
 * Deletes log rows that retention no longer keeps, at most `batch` per call
 * so a sweep never makes a flush long. Never deletes past `keepAfterSeq`
 * (the seq every connected subscriber has reached). Returns the highest seq
 * trimmed, or 0 when nothing was.
 */
export function trimLog(
  sql: SqlStorage,
  options: { maxRows: number; maxAgeMs: number; keepAfterSeq: number; now: number; batch: number },
): number {
  const max = maxLogSeq(sql);
  const byCount = max - options.maxRows;
  const byAge =
    sql.exec<{ seq: number | null }>(`SELECT max(seq) AS seq FROM (SELECT seq FROM ${LOG_TABLE} WHERE ts < ? ORDER BY seq LIMIT ?)`, options.now - options.maxAgeMs, options.batch).one()
      .seq ?? 0;
  const oldest = sql.exec<{ seq: number | null }>(`SELECT min(seq) AS seq FROM ${LOG_TABLE}`).one().seq ?? 0;
  let through = Math.min(Math.max(byCount, byAge), options.keepAfterSeq, oldest + options.batch - 1);
  if (through < oldest) return 0;
  sql.exec(`DELETE FROM ${LOG_TABLE} WHERE seq <= ?`, through);
  return through;
}
