import * as v from "valibot";

/** Names that travel on the wire (subscription ids, shape names, client ids) stay short and printable. */
export const nameSchema = /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.string(), /* @__PURE__ */ v.minLength(1), /* @__PURE__ */ v.maxLength(128));

/** A row key: the value of the table's key column. */
export const rowKeySchema = /* @__PURE__ */ v.union([/* @__PURE__ */ v.string(), /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.number(), /* @__PURE__ */ v.finite())]);
export type RowKey = v.InferOutput<typeof rowKeySchema>;

/** A synced row as JSON: column name → value. */
export const rowSchema = /* @__PURE__ */ v.record(/* @__PURE__ */ v.string(), /* @__PURE__ */ v.unknown());
export type Row = Record<string, unknown>;

/**
 * A position in a room's change log. `seq` is the last `__cdc_log.seq` the
 * holder has applied; `epoch` names the history that `seq` belongs to. A
 * cursor from another epoch is meaningless to the room and answered with a
 * reset.
 */
export const cursorSchema = /* @__PURE__ */ v.object({
  seq: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.number(), /* @__PURE__ */ v.integer(), /* @__PURE__ */ v.minValue(0)),
  epoch: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.string(), /* @__PURE__ */ v.minLength(1), /* @__PURE__ */ v.maxLength(64)),
});
export type Cursor = v.InferOutput<typeof cursorSchema>;
