import * as v from "valibot";

/** Names that travel on the wire (subscription ids, shape names, client ids) stay short and printable. */
export const nameSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(128));

/** A row key: the value of the table's key column. */
export const rowKeySchema = v.union([v.string(), v.pipe(v.number(), v.finite())]);
export type RowKey = v.InferOutput<typeof rowKeySchema>;

/** A synced row as JSON: column name → value. */
export const rowSchema = v.record(v.string(), v.unknown());
export type Row = Record<string, unknown>;

/**
 * A position in a room's change log. `seq` is the last `__cdc_log.seq` the
 * holder has applied; `epoch` names the history that `seq` belongs to. A
 * cursor from another epoch is meaningless to the room and answered with a
 * reset.
 */
export const cursorSchema = v.object({
  seq: v.pipe(v.number(), v.integer(), v.minValue(0)),
  epoch: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
});
export type Cursor = v.InferOutput<typeof cursorSchema>;
