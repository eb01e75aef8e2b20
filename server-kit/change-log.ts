import { quoteIdent, affinityOf, type Affinity } from "./where.js";
import { parseRowImage, rowImageSql, valueRefusal } from "./values.js";

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
/**
 * Rows an INSERT or UPDATE may remove through REPLACE conflict resolution,
 * noted by a BEFORE trigger so the AFTER trigger can log their deletion:
 * SQLite's REPLACE deletes conflicting rows without firing delete triggers
 * (unless `recursive_triggers` is on, which would change the room's own
 * triggers), so without this a row moved or displaced by `INSERT OR REPLACE`
 * would stay on clients forever.
 */
export const DISPLACED_TABLE = "__lunora_displaced";
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
  /** Column sets of the table's primary key and UNIQUE indexes (what REPLACE resolves conflicts on). */
  uniques: string[][];
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
  sql.exec(`CREATE TABLE IF NOT EXISTS ${DISPLACED_TABLE} ("table" TEXT NOT NULL, id, image TEXT NOT NULL)`);
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
  const rows = sql.exec<{ name: string; type: string; pk: number }>(`SELECT name, type, pk FROM pragma_table_info(?)`, table).toArray();
  if (rows.length === 0) return undefined;
  const uniques: string[][] = [];
  const primaryKey = rows.filter((row) => row.pk > 0).sort((a, b) => a.pk - b.pk).map((row) => row.name);
  if (primaryKey.length > 0) uniques.push(primaryKey);
  const indexes = sql.exec<{ name: string; origin: string }>(`SELECT name, origin FROM pragma_index_list(?) WHERE "unique" = 1 ORDER BY name`, table).toArray();
  for (const index of indexes) {
    if (index.origin === "pk") continue; // listed above
    const parts = sql.exec<{ name: string | null }>(`SELECT name FROM pragma_index_info(?) ORDER BY seqno`, index.name).toArray();
    // An index on an expression cannot be matched column by column; the
    // existence check of the AFTER trigger keeps that a missed case, never a false delete.
    if (parts.length === 0 || parts.some((part) => part.name === null)) continue;
    uniques.push(parts.map((part) => part.name!));
  }
  return { name: table, key, columns: new Map(rows.map((row) => [row.name, affinityOf(row.type ?? "")])), uniques };
}

/**
 * `a OP b OP c …` as a balanced tree: DO SQLite limits expression depth to
 * 100, which a left-deep chain over a wide table's unique indexes exceeds.
 */
function balancedSql(items: string[], op: "OR" | "AND"): string {
  if (items.length === 0) return op === "OR" ? "0" : "1";
  if (items.length === 1) return items[0];
  const middle = Math.ceil(items.length / 2);
  return `(${balancedSql(items.slice(0, middle), op)} ${op} ${balancedSql(items.slice(middle), op)})`;
}

/** A fingerprint of the columns (and unique indexes) the triggers were generated for. */
function schemaSignature(info: TableInfo): string {
  return `v2|${info.key}|${JSON.stringify([...info.columns])}|${JSON.stringify(info.uniques)}`;
}

/**
 * Installs (or re-installs after a schema change) the capture triggers of one
 * synced table. Returns false when nothing had to change.
 *
 * - AFTER INSERT / UPDATE log the rows REPLACE displaced, then the change
 *   with its images; building the post-image refuses (RAISE) values the
 *   synced representation cannot carry exactly (see `values.ts`).
 * - BEFORE INSERT / UPDATE note the rows the statement could displace
 *   (same primary key or UNIQUE value). Only those that are gone when the
 *   AFTER trigger runs (or whose key the new row now holds) are logged as
 *   deleted, so INSERT OR IGNORE and UPSERT, which displace nothing, log
 *   nothing extra.
 */
export function installCaptureTriggers(sql: SqlStorage, info: TableInfo): boolean {
  const signature = schemaSignature(info);
  const metaKey = `triggers:${info.name}`;
  if (readMeta(sql, metaKey) === signature) return false;
  const table = quoteIdent(info.name);
  const name = (op: string) => quoteIdent(`${TRIGGER_PREFIX}${info.name}_${op}`);
  const tableLiteral = `'${info.name.replaceAll("'", "''")}'`;
  const key = quoteIdent(info.key);
  const columns = [...info.columns.keys()];
  const now = `((julianday('now') - 2440587.5) * 86400000.0)`;
  for (const op of ["insert", "update", "delete", "displace_insert", "displace_update"]) sql.exec(`DROP TRIGGER IF EXISTS ${name(op)}`);
  const conflictsWith = (changedOnly: boolean) =>
    balancedSql(
      info.uniques.map((set) => {
        const same = balancedSql(set.map((column) => `c.${quoteIdent(column)} = NEW.${quoteIdent(column)}`), "AND");
        if (!changedOnly) return `(${same})`;
        // An UPDATE can only collide on a unique set it changes.
        const changed = balancedSql(set.map((column) => `NEW.${quoteIdent(column)} IS NOT OLD.${quoteIdent(column)}`), "OR");
        return `((${changed}) AND ${same})`;
      }),
      "OR",
    );
  const noteDisplaced = (update: boolean) => `
    DELETE FROM ${DISPLACED_TABLE} WHERE "table" = ${tableLiteral};
    INSERT INTO ${DISPLACED_TABLE} ("table", id, image)
      SELECT ${tableLiteral}, c.${key}, ${rowImageSql(columns, "c")} FROM ${table} AS c
      WHERE ${update ? `c.${key} IS NOT OLD.${key} AND ` : ""}(${conflictsWith(update)});`;
  // Only an UPDATE that changes a unique column can displace a row; the
  // others (most updates) skip the bookkeeping. Stale notes left by a
  // statement whose AFTER trigger never ran (INSERT OR IGNORE) are cleared by
  // the next BEFORE trigger, which always runs before any AFTER that reads them.
  const uniqueColumns = [...new Set(info.uniques.flat())];
  const uniqueChanged = balancedSql(
    uniqueColumns.map((column) => `NEW.${quoteIdent(column)} IS NOT OLD.${quoteIdent(column)}`),
    "OR",
  );
  const logDisplaced = (condition: string) => `
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
      SELECT ${now}, ${tableLiteral}, d.id, 'delete', NULL, d.image FROM ${DISPLACED_TABLE} AS d
      WHERE ${condition} AND d."table" = ${tableLiteral} AND (d.id = NEW.${key} OR NOT EXISTS (SELECT 1 FROM ${table} AS c WHERE c.${key} = d.id))
      ORDER BY d.rowid;
    DELETE FROM ${DISPLACED_TABLE} WHERE ${condition} AND "table" = ${tableLiteral};`;
  const displaces = info.uniques.length > 0;
  // Post-images refuse values the synced representation cannot carry (values.ts).
  const refuse = valueRefusal(info.name);
  if (displaces) {
    sql.exec(`CREATE TRIGGER ${name("displace_insert")} BEFORE INSERT ON ${table} BEGIN ${noteDisplaced(false)} END`);
    sql.exec(`CREATE TRIGGER ${name("displace_update")} BEFORE UPDATE ON ${table} WHEN ${uniqueChanged} BEGIN ${noteDisplaced(true)} END`);
  }
  sql.exec(`CREATE TRIGGER ${name("insert")} AFTER INSERT ON ${table} BEGIN
    ${displaces ? logDisplaced("1") : ""}
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, NEW.${key}, 'insert', ${rowImageSql(columns, "NEW", { refuse })}, NULL);
  END`);
  sql.exec(`CREATE TRIGGER ${name("update")} AFTER UPDATE ON ${table} BEGIN
    ${displaces ? logDisplaced(uniqueChanged) : ""}
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, NEW.${key}, 'update', ${rowImageSql(columns, "NEW", { refuse })}, ${rowImageSql(columns, "OLD")});
  END`);
  sql.exec(`CREATE TRIGGER ${name("delete")} AFTER DELETE ON ${table} BEGIN
    INSERT INTO ${LOG_TABLE} (ts, "table", id, op, doc, prev)
    VALUES (${now}, ${tableLiteral}, OLD.${key}, 'delete', NULL, ${rowImageSql(columns, "OLD")});
  END`);
  writeMeta(sql, metaKey, signature);
  return true;
}

/**
 * The highest seq the log has issued: its largest row, or AUTOINCREMENT's
 * high-water mark once the log is empty (after `resetEpoch` cleared it).
 * Reading only `max(seq)` made an emptied log look like history that went
 * back, and the next flush started a second epoch. A rolled-back write
 * still lowers both, so that check keeps working.
 */
export function maxLogSeq(sql: SqlStorage): number {
  const row = sql
    .exec<{ seq: number | null }>(
      `SELECT max(coalesce((SELECT max(seq) FROM ${LOG_TABLE}), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = '${LOG_TABLE}'), 0)) AS seq`,
    )
    .one();
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
        doc: row.doc === null ? null : parseRowImage(row.doc),
        prev: row.prev === null ? null : parseRowImage(row.prev),
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
 *
 * `changed` is the union of the columns each update of the stretch changed
 * (null: the whole row — an insert, a delete, a change of the key column or
 * an update without a pre-image). A union, not the net difference of
 * `before` and `after`: a column changed and changed back is in it. A
 * client's row may be at any point of the stretch (a subscription resumed
 * from its cursor shares rows with another that is further on; a snapshot
 * page read mid-stretch), and a patch of the union's final values brings a
 * row from any of those points to `after`.
 */
export interface KeyChange {
  table: string;
  key: string | number;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  changed: ReadonlySet<string> | null;
}

/** Whether two values of a row image are the same (JSON scalars, or `{ $blob }` objects). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return (a as { $blob?: unknown }).$blob !== undefined && (a as { $blob?: unknown }).$blob === (b as { $blob?: unknown }).$blob;
}

/** The columns an update changed, comparing its post-image with its pre-image. */
function changedColumns(doc: Record<string, unknown>, prev: Record<string, unknown>): Set<string> {
  const changed = new Set<string>();
  for (const column in doc) if (!sameValue(doc[column], prev[column])) changed.add(column);
  for (const column in prev) if (!(column in doc)) changed.add(column);
  return changed;
}

function unionColumns(a: ReadonlySet<string> | null, b: ReadonlySet<string> | null): ReadonlySet<string> | null {
  if (a === null || b === null) return null;
  if (b.size === 0) return a;
  if (a.size === 0) return b;
  const union = new Set(a);
  for (const column of b) union.add(column);
  return union;
}

/**
 * Folds log entries into one {@link KeyChange} per (table, key), in order of
 * each key's last change. An update that changed the key column counts as a
 * delete of the old key and an insert of the new one.
 */
export function coalesceLog(entries: Iterable<LogEntry>, keys: ReadonlyMap<string, string>, limit = Infinity): Map<string, KeyChange> | undefined {
  const changes = new Map<string, KeyChange>();
  const apply = (
    table: string,
    key: string | number,
    before: Record<string, unknown> | null,
    after: Record<string, unknown> | null,
    changed: ReadonlySet<string> | null,
  ) => {
    const id = `${table}\u0000${typeof key}\u0000${key}`;
    const existing = changes.get(id);
    if (existing) {
      changes.delete(id); // re-insert to keep "order of last change"
      changes.set(id, { table, key, before: existing.before, after, changed: unionColumns(existing.changed, changed) });
    } else {
      changes.set(id, { table, key, before, after, changed });
    }
  };
  for (const entry of entries) {
    const keyColumn = keys.get(entry.table);
    if (keyColumn === undefined) continue; // a table that is no longer synced
    const newKey = entry.doc?.[keyColumn] as string | number | undefined;
    const oldKey = entry.prev?.[keyColumn] as string | number | undefined;
    if (entry.op === "update" && oldKey !== undefined && newKey !== undefined && oldKey !== newKey) {
      apply(entry.table, oldKey, entry.prev, null, null);
      apply(entry.table, newKey, null, entry.doc, null);
    } else {
      const key = newKey ?? oldKey;
      if (key === undefined || key === null) continue;
      const changed = entry.op === "update" && entry.doc !== null && entry.prev !== null ? changedColumns(entry.doc, entry.prev) : null;
      apply(entry.table, key, entry.prev, entry.doc, changed);
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
