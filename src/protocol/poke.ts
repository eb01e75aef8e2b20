import * as v from "valibot";
import { cursorSchema, nameSchema, rowKeySchema, rowSchema } from "./common.js";
import { mutationResultSchema } from "./push.js";
import { resolvedSubsetSchema } from "./subset.js";

/**
 * Pokes carry row changes from a room to one socket.
 *
 * A poke is `pokeStart`, zero or more `pokePart`, then `pokeEnd`, all with the
 * same `pokeId`, sent back to back on one socket. It is the unit of atomicity:
 * the client buffers parts and applies the whole poke at `pokeEnd`, one sync
 * transaction per affected subscription, so no reader sees half of it. Parts
 * exist only because a frame must stay under `MAX_FRAME_BYTES`; how a poke is
 * split says nothing about its content.
 *
 * `pokeStart.subs` lists the subscriptions the poke covers; after it is
 * applied each of them is at `pokeEnd.cursor`. A subscription also listed in
 * `resets` must drop every row it holds first (a snapshot follows in the
 * parts): that is how a subscription starts, and how the room answers a cursor
 * it cannot serve (trimmed log, other epoch).
 *
 * A `pokeStart` while another poke is open, a part or end with an unknown
 * `pokeId`, or an op naming a subscription the poke did not list is a protocol
 * violation: the client drops the open poke, resets the subscriptions it
 * covered and subscribes them again. Nothing is applied from a broken poke.
 *
 * A poke small enough for one frame travels as a single `poke` frame with the
 * fields of all three (most pokes: sending one frame instead of three is what
 * keeps fan-out to many sockets cheap). It means exactly the same as
 * `pokeStart` + one `pokePart` + `pokeEnd`.
 *
 * Row ops are whole-row post-images (`put`, an upsert) or deletes (`del`).
 * An update that moves a row out of a subscription's shape arrives as `del`.
 */
export const pokeStartSchema = v.strictObject({
  type: v.literal("pokeStart"),
  pokeId: nameSchema,
  subs: v.array(nameSchema),
  resets: v.optional(v.array(nameSchema)),
  /** For limited subsets in `resets`: the predicate each was resolved to (resume with it). */
  subsets: v.optional(v.array(resolvedSubsetSchema)),
});
export type PokeStart = v.InferOutput<typeof pokeStartSchema>;

export const rowOpSchema = v.variant("op", [
  v.strictObject({ op: v.literal("put"), sub: nameSchema, key: rowKeySchema, row: rowSchema }),
  v.strictObject({ op: v.literal("del"), sub: nameSchema, key: rowKeySchema }),
]);
export type RowOp = v.InferOutput<typeof rowOpSchema>;

export const pokePartSchema = v.strictObject({
  type: v.literal("pokePart"),
  pokeId: nameSchema,
  ops: v.array(rowOpSchema),
});
export type PokePart = v.InferOutput<typeof pokePartSchema>;

export const pokeEndSchema = v.strictObject({
  type: v.literal("pokeEnd"),
  pokeId: nameSchema,
  cursor: cursorSchema,
  /**
   * Outcomes of this socket's mutations whose effects are included in this
   * poke (the watermark travels with the data it confirms).
   */
  mutations: v.optional(v.array(mutationResultSchema)),
});
export type PokeEnd = v.InferOutput<typeof pokeEndSchema>;

/** A whole poke in one frame: `pokeStart` + `pokePart` + `pokeEnd` of a poke that fits. */
export const pokeSchema = v.strictObject({
  type: v.literal("poke"),
  pokeId: nameSchema,
  subs: v.array(nameSchema),
  resets: v.optional(v.array(nameSchema)),
  subsets: v.optional(v.array(resolvedSubsetSchema)),
  ops: v.array(rowOpSchema),
  cursor: cursorSchema,
  mutations: v.optional(v.array(mutationResultSchema)),
});
export type Poke = v.InferOutput<typeof pokeSchema>;
