import * as v from "valibot";
import { cursorSchema, nameSchema } from "./common.js";

/**
 * What a subscription reads: a whole table under its read rule (`list`) or a
 * named shape with arguments. Either name is looked up in the room's
 * definitions; a client never names a table, column or SQL fragment that the
 * server did not list.
 */
export const sourceSchema = /* @__PURE__ */ v.union([
  /* @__PURE__ */ v.strictObject({ list: nameSchema }),
  /* @__PURE__ */ v.strictObject({ shape: nameSchema, args: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()) }),
]);
export type Source = v.InferOutput<typeof sourceSchema>;

/**
 * `subscribe`: start (or resume) a subscription on this socket. With a
 * `cursor` the room sends only what changed since it (coalesced per key), or
 * a reset if it cannot; without one it sends a snapshot. Re-using a live `id`
 * replaces that subscription. With `subset` it reads only part of a shape
 * (on-demand sync; see `subsetSchema`).
 *
 * `subset`, like a shape's `args`, is checked by the room (size, then
 * `subsetSchema`, then its columns), not here: a bad subset is then an
 * `INVALID_ARGS` error on that subscription, which the client can pin to the
 * query that asked for it, instead of a frame-level `PROTOCOL_ERROR` that
 * names no subscription and counts towards closing the socket.
 */
export const subscribeSchema = /* @__PURE__ */ v.strictObject({
  type: /* @__PURE__ */ v.literal("subscribe"),
  id: nameSchema,
  source: sourceSchema,
  cursor: /* @__PURE__ */ v.optional(cursorSchema),
  subset: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()),
});
export type Subscribe = v.InferOutput<typeof subscribeSchema>;

/** `unsubscribe`: stop a subscription. Unknown ids are ignored. */
export const unsubscribeSchema = /* @__PURE__ */ v.strictObject({
  type: /* @__PURE__ */ v.literal("unsubscribe"),
  id: nameSchema,
});
export type Unsubscribe = v.InferOutput<typeof unsubscribeSchema>;

/**
 * `ack`: flow control. The client tells the room how many characters of
 * room frames it has received since its previous `ack` (at least every
 * `ACK_EVERY_CHARS`). The room closes a socket whose unacknowledged text
 * exceeds its bound (`SLOW_CONSUMER`, 4009) instead of buffering for it
 * without limit; the client then resumes from its cursors.
 */
export const ackSchema = /* @__PURE__ */ v.strictObject({
  type: /* @__PURE__ */ v.literal("ack"),
  received: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.number(), /* @__PURE__ */ v.integer(), /* @__PURE__ */ v.minValue(0)),
});
export type Ack = v.InferOutput<typeof ackSchema>;
