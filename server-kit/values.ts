import { LunoraError } from "../src/protocol/errors.js";

/**
 * How a value stored in a synced column is represented outside SQLite: in
 * change-log images, in snapshots, on the wire, and when predicates are
 * evaluated in JavaScript. One representation, defined here only, so that a
 * row reads the same whether it reached the client through a snapshot or
 * through the log, and so that `matchesWhere` sees what SQLite compares.
 *
 * | SQLite storage class | representation                                   |
 * |----------------------|--------------------------------------------------|
 * | NULL                 | `null`                                           |
 * | INTEGER              | a JSON number; only ±(2^53 − 1) is accepted       |
 * | REAL                 | a JSON number with every bit of the double; finite only |
 *
 * (Inside the change log a REAL may be stored as `[m, k]`; see
 * `valueJsonSql`. Nothing outside this module sees that form.)
 * | TEXT                 | a JSON string                                    |
 * | BLOB                 | `{ "$blob": "<uppercase hex>" }`                 |
 *
 * Integers beyond `Number.MAX_SAFE_INTEGER` and non-finite REALs have no
 * exact JSON-number form a JavaScript client can hold, so the capture
 * triggers refuse them while building the post-image: the write fails with
 * an SQLite constraint error whose message starts with
 * {@link VALUE_OUT_OF_RANGE_MARKER} (a mutator reports it
 * as `CONSTRAINT_VIOLATION`). Refusing is what keeps the snapshot, the log and
 * both predicate engines in agreement; a silently rounded integer is how a
 * client used to keep a deleted row forever.
 */

/** The tag of a BLOB value: `{ "$blob": "ABCD" }` is the two-byte BLOB `X'ABCD'`. */
export const BLOB_TAG = "$blob";

/** A BLOB as it appears in images, snapshots and frames. */
export interface BlobValue {
  readonly $blob: string;
}

/** Start of the message of the SQLite error a capture trigger raises for a value it refuses. */
export const VALUE_OUT_OF_RANGE_MARKER = "LUNORA_VALUE_OUT_OF_RANGE";

const MAX_SAFE = "9007199254740991";
/** DBL_MAX: a REAL above it (in magnitude) is infinite. */
const MAX_FINITE_REAL = "1.7976931348623157e308";

function sqlText(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * SQL text (a JSON value) for the value `v`. REALs are where care is needed:
 * SQLite's `json_object` prints 15 significant digits, and even
 * `printf('%!.17g')` misprints doubles of large or small magnitude (found by
 * the property test: -3.536552790332434e-287 came back as
 * -3.5365527903324335e-287). So a REAL that is not a safe integer is written
 * exactly as `[m, k]`, meaning m × 2^-k with m an integer below 2^56:
 * scaling by powers of two is exact in binary floating point, so no decimal
 * conversion happens in SQLite at all. `k` comes from `log2`, whose
 * truncation may be off by one; the extra bits of headroom keep m an integer
 * either way. {@link parseRowImage} turns the pair back into the number.
 */

/**
 * The encoder. With `refuse` (a trigger's message, for post-images) a value
 * the representation cannot carry aborts the write with RAISE: the check
 * rides on the encoding the trigger does anyway instead of a second pass over
 * the columns. Without it (pre-images, snapshots of old rows) such a value is
 * encoded as well as it can be: unsafe integers as their digits, non-finite
 * REALs as null.
 */
function valueJsonSql(v: string, refuse: string | undefined): string {
  const SCALE = `(54 - CAST(log2(abs(${v})) AS INTEGER))`;
  const abort = refuse === undefined ? undefined : `RAISE(ABORT, ${sqlText(refuse)})`;
  const integer = abort === undefined ? `CAST(${v} AS TEXT)` : `CASE WHEN ${v} > ${MAX_SAFE} OR ${v} < -${MAX_SAFE} THEN ${abort} ELSE CAST(${v} AS TEXT) END`;
  return (
    `CASE typeof(${v}) WHEN 'integer' THEN ${integer} ` +
    `WHEN 'real' THEN CASE WHEN ${v} = CAST(${v} AS INTEGER) AND abs(${v}) < 9007199254740992.0 THEN CAST(CAST(${v} AS INTEGER) AS TEXT) ` +
    `WHEN ${v} > ${MAX_FINITE_REAL} OR ${v} < -${MAX_FINITE_REAL} THEN ${abort ?? "'null'"} ` +
    `ELSE '[' || CAST(${v} * pow(2, ${SCALE} / 2) * pow(2, ${SCALE} - ${SCALE} / 2) AS INTEGER) || ',' || ${SCALE} || ']' END ` +
    `WHEN 'text' THEN json_quote(${v}) WHEN 'blob' THEN '{"${BLOB_TAG}":"' || hex(${v}) || '"}' ELSE 'null' END`
  );
}

/** The message of the RAISE that refuses a value in `table` (a literal: RAISE cannot name the column). */
export function valueRefusal(table: string): string {
  return `${VALUE_OUT_OF_RANGE_MARKER}: a column of ${table} holds an integer beyond ±${MAX_SAFE} (Number.MAX_SAFE_INTEGER) or a non-finite number, which synced columns refuse`;
}

const IMAGE_CTE = "__lunora_image_columns";

/**
 * SQL for the JSON image of one row (`alias` is `NEW`, `OLD` or a table
 * alias). The columns are listed once, in a CTE, and folded with
 * `group_concat`, so the encoder appears once whatever the width of the
 * table: a trigger of a 100-column table stays below DO SQLite's 100 KB
 * statement limit (the encoder names its value some twenty times, so one
 * inline expression per column would not), and there is no function-argument
 * limit. Every column name is JSON-quoted here, in JavaScript, so no name
 * ever becomes a JSON path (the old `json_insert` path for tables over 60
 * columns broke on names with quotes). `options.refuse` (trigger
 * post-images only: RAISE exists only in triggers) is the
 * {@link valueRefusal} message.
 */
export function rowImageSql(columns: readonly string[], alias: string, options: { refuse?: string } = {}): string {
  // A named CTE over VALUES: SQLite does not resolve VALUES' own column names
  // (column1…) when its first row refers to the outer row, and DO SQLite
  // allows only 5 terms in a compound SELECT, which rules out UNION ALL.
  // group_concat folds the VALUES rows in the order they are listed.
  const rows = columns.map((column) => `(${sqlText(JSON.stringify(column))}, ${alias}.${quoteIdent(column)})`);
  // The CTE's name must not shadow a table alias the rows refer to.
  return `(WITH ${IMAGE_CTE}(n, v) AS (VALUES ${rows.join(", ")}) SELECT '{' || group_concat(n || ':' || ${valueJsonSql("v", options.refuse)}, ',') || '}' FROM ${IMAGE_CTE})`;
}

const HEX = "0123456789ABCDEF";

function bytesToHex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += HEX[byte >> 4] + HEX[byte & 15];
  return out;
}

function hexToBytes(hex: string): Uint8Array | undefined {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * A value read from SQLite by the room (`sql.exec`) in its synced form: the
 * same form the capture triggers write into the log. The snapshot calls this
 * for every column.
 */
export function syncedValue(value: SqlStorageValue): unknown {
  if (value instanceof ArrayBuffer) return { [BLOB_TAG]: bytesToHex(new Uint8Array(value)) } satisfies BlobValue;
  return value;
}

/** m × 2^-k, exactly: two power-of-two scalings, neither of which can under- or overflow on the way. */
function exactReal(m: number, k: number): number {
  const first = Math.trunc(k / 2);
  return m * 2 ** -first * 2 ** -(k - first);
}

/** Parses a change-log image (JSON text written by {@link rowImageSql}) into the synced form. */
export function parseRowImage(text: string): Record<string, unknown> {
  const image = JSON.parse(text) as Record<string, unknown>;
  for (const column in image) {
    const value = image[column];
    if (Array.isArray(value)) image[column] = exactReal(value[0] as number, value[1] as number);
  }
  return image;
}

/** Whether a value is a BLOB in its synced form. */
export function isBlobValue(value: unknown): value is BlobValue {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as Record<string, unknown>)[BLOB_TAG] === "string" &&
    Object.keys(value).length === 1
  );
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A string with each unpaired surrogate replaced by U+FFFD. SQLite would
 * store an unpaired surrogate as three bytes that the runtime reads back as
 * three U+FFFD, so the row a client receives and the bytes SQL predicates
 * compare would differ; replacing it on the way in keeps them one value.
 */
function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, "\uFFFD");
}

/**
 * Turns a value given to `ctx.db` into one SQLite can bind, so that what a
 * client received can be written back unchanged: a synced BLOB
 * (`{ $blob }`) or a `Uint8Array` becomes a BLOB, a `bigint` inside the safe
 * range a number; other objects are stored as JSON text. Strings lose
 * unpaired surrogates (see `wellFormed`).
 */
export function bindableValue(table: string, column: string, value: unknown): SqlStorageValue {
  if (value === undefined || value === null) return null;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value === "string") return wellFormed(value);
  if (value instanceof ArrayBuffer) return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new LunoraError("INVALID_ARGS", `value of ${table}.${column} must be a finite number`);
    return value;
  }
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LunoraError("INVALID_ARGS", `value of ${table}.${column} is beyond ±Number.MAX_SAFE_INTEGER, which synced columns cannot hold exactly`);
    }
    return Number(value);
  }
  if (value instanceof Uint8Array) return value.slice().buffer;
  if (isBlobValue(value)) {
    const bytes = hexToBytes(value.$blob);
    if (bytes === undefined) throw new LunoraError("INVALID_ARGS", `value of ${table}.${column} is not a valid { $blob: hex } value`);
    return bytes.buffer as ArrayBuffer;
  }
  try {
    return JSON.stringify(value);
  } catch {
    throw new LunoraError("INVALID_ARGS", `value of ${table}.${column} cannot be stored`);
  }
}
