/**
 * Snapshots of any size.
 *
 * A subscription starts (or is reset) with a snapshot of its shape. Sent in
 * one go, a big shape would either sit whole in the room's memory or pass the
 * slow-consumer bound of the very socket it is sent to, and be sent again on
 * every reconnect. So a snapshot is streamed:
 *
 * - It is one poke (`pokeStart` … `pokeEnd`), so the client still applies it
 *   atomically. The poke lists every subscription of the socket and resets
 *   the ones being snapshotted.
 * - The rows are read page by page in key order (keyset pagination:
 *   `key > last key sent ORDER BY key LIMIT n`), and a page is read only while
 *   the socket has less than {@link SNAPSHOT_WINDOW_CHARS} unacknowledged.
 *   Each `ack` of the client reads the next pages. The room holds at most one
 *   page and one frame part, whatever the size of the shape; a reader that
 *   keeps reading is never closed as a slow consumer for it.
 * - Pages are read at different times, so the poke is made consistent the
 *   way an incremental snapshot is: every flush while the poke is open
 *   appends the changes of the socket's subscriptions to it. For a
 *   subscription being scanned, only changes of keys at or before the scan's
 *   boundary are appended (the client already has those rows, exactly as of
 *   the page or the last appended op); changes of keys beyond it are skipped,
 *   because the page that reaches them reads their current state. At
 *   `pokeEnd` every listed subscription is therefore exactly at the poke's
 *   cursor — the flushed seq of the last flush that appended to it.
 * - Mutation outcomes of the socket's pushes during the poke ride in its
 *   `pokeEnd`, with the rows they produced.
 *
 * One poke is open per socket at a time; subscribe frames that arrive
 * meanwhile wait for its end. The open poke lives in memory only: if the
 * object is evicted mid-snapshot (the client stopped acknowledging for the
 * eviction window), the socket is closed on wake with
 * `CLOSE_CODES.INTERRUPTED` and the client resumes from its cursors.
 *
 * Keys must be INTEGER or TEXT (compared as SQLite orders them); the key
 * column should be the table's primary key or indexed, else each page scans.
 */
import type { MutationResult } from "../src/protocol/index.js";
import type { PokeWriter } from "./poke-writer.js";
import { compareSqlite, quoteIdent, whereToSql, type CompiledWhere } from "./where.js";

/** Unacknowledged text under which the next pages of a snapshot are read. */
export const SNAPSHOT_WINDOW_CHARS = 2 * 1024 * 1024;
/** Rows read per page of a snapshot scan (the room's memory is bounded by one page). */
export const SNAPSHOT_PAGE_ROWS = 500;
/**
 * Bound parameters a snapshot page adds to the subscription's predicate (the
 * last key sent). A predicate may use at most `MAX_BOUND_PARAMETERS` minus
 * this, or the page's statement would pass SQLite's limit.
 */
export const SNAPSHOT_PAGE_PARAMETERS = 1;

type Key = string | number;

/** What a snapshot reads: one subscription's table, predicate and projection. */
export interface ScanTarget {
  id: string;
  table: string;
  key: string;
  columns: string[];
  where: CompiledWhere;
}

/** One subscription being snapshotted inside an open poke. */
export interface SnapshotScan {
  target: ScanTarget;
  /** The last key sent; undefined until the first row. */
  after: Key | undefined;
  done: boolean;
}

/** The poke open on a socket while snapshots stream through it. */
export interface OpenPoke {
  writer: PokeWriter;
  /** In order; the first not `done` is the one being read. */
  scans: SnapshotScan[];
  /** The log seq every listed subscription is at once the poke ends. */
  seq: number;
  mutations: MutationResult[];
}

/**
 * Whether a change of `key` for subscription `sub` belongs in the open poke:
 * always for a subscription that is not being snapshotted, and for one that
 * is, only when the scan has passed the key (else the scan will read it).
 */
export function coveredByPoke(open: OpenPoke, sub: string, key: Key): boolean {
  const scan = open.scans.find((candidate) => candidate.target.id === sub);
  if (scan === undefined || scan.done) return true;
  return scan.after !== undefined && compareSqlite(key, scan.after) <= 0;
}

/**
 * Reads the next page of a scan: rows of the target with keys after the
 * boundary, in key order, projected. Returns the rows; the scan is done when
 * fewer than a page came back.
 */
export function readSnapshotPage(sql: SqlStorage, scan: SnapshotScan, pageRows = SNAPSHOT_PAGE_ROWS): Array<Record<string, SqlStorageValue>> {
  const { target } = scan;
  const { sql: predicate, params } = whereToSql(target.where);
  const key = quoteIdent(target.key);
  const boundary = scan.after === undefined ? "" : ` AND ${key} > ?`;
  const rows = sql
    .exec(
      // The page size is an integer of ours, inlined: it costs no bound parameter.
      `SELECT ${target.columns.map(quoteIdent).join(", ")} FROM ${quoteIdent(target.table)} WHERE (${predicate})${boundary} ORDER BY ${key} LIMIT ${Math.trunc(pageRows)}`,
      ...params,
      ...(scan.after === undefined ? [] : [scan.after]),
    )
    .toArray();
  if (rows.length < pageRows) scan.done = true;
  if (rows.length > 0) scan.after = rows[rows.length - 1][target.key] as Key;
  return rows;
}
