import type { Cursor, Row, RowKey } from "./common.js";
import type { MutationResult } from "./push.js";
import type { ResolvedSubset } from "./subset.js";

/**
 * Pokes carry row changes from a room to one socket (protocol 4; see
 * `docs/protocol.md`, "Pokes").
 *
 * A poke is `pokeStart`, zero or more `pokePart`, then `pokeEnd`, all with the
 * same `pokeId`, sent back to back on one socket — or, when it fits in one
 * frame (most do), a single `poke` frame with the fields of all three. It is
 * the unit of atomicity: the client buffers parts and applies the whole poke
 * at `pokeEnd`, so no reader sees half of it.
 *
 * **Groups.** Ops do not name subscriptions: they name the subscription's
 * *group*, an id the room derives from what the subscription reads (table,
 * resolved predicate, projection). Every socket whose subscriptions read the
 * same groups receives byte-identical frames, so the room builds a flush's
 * frames once and sends the same strings to many sockets. A poke that starts
 * subscriptions (the answer to `subscribe`: a resume or a reset) `bind`s each
 * to its group, its key column and its columns. After any poke, every
 * subscription bound on the socket (before or by this poke) is at `cursor`.
 * Ops for a group bound to no live subscription of the socket are ignored
 * (they may follow an `unsubscribe` the room had not read yet); ops for a
 * group bound to several subscriptions apply to each.
 *
 * **Ops** are an ordered list of {@link OpBlock}s `[group, kind, ...items]`,
 * applied in order. Kinds: `"p"` put (an upsert of a whole projected row; its
 * key is the row's key column), `"u"` update (a patch: the key column plus
 * the columns that changed, merged into the row the subscription holds; a
 * patch for a row it does not hold is a protocol violation), `"d"` delete
 * (keys). An update that moves a row into a subscription's shape is a put;
 * one that moves it out is a delete.
 *
 * A `pokeStart` while another poke is open, a part or end with an unknown
 * `pokeId`, a reset of a subscription the poke neither binds nor found
 * bound, or a malformed block is a protocol violation: the client drops the
 * open poke, resets the subscriptions it covered and subscribes them again.
 * Nothing is applied from a broken poke.
 *
 * These frames are the hot path of every client, so they are checked by a
 * hand-written structural check (`room-frames.ts`), not by valibot; the
 * types below are what that check guarantees. Names (`pokeId`, `sub`,
 * `group`, `key`, columns) are 1–128 characters.
 */

/** A subscription started by this poke: the group its ops arrive under, its key column and projected columns. */
export interface Binding {
  sub: string;
  group: string;
  /** The key column: a put's (and a patch's) key is `row[key]`. One of `columns`. */
  key: string;
  columns: string[];
}

/** Op kinds of an {@link OpBlock}: put (whole row), update (patch), delete (keys). */
export type OpKind = "p" | "u" | "d";

/**
 * One run of ops of one kind for one group: `[group, "p", row, row…]`,
 * `[group, "u", patch, patch…]` or `[group, "d", key, key…]`.
 */
export type OpBlock = [group: string, kind: "p", ...rows: Row[]] | [group: string, kind: "u", ...patches: Row[]] | [group: string, kind: "d", ...keys: RowKey[]];

export interface PokeStart {
  type: "pokeStart";
  pokeId: string;
  /** Subscriptions this poke starts (a subscribe's answer), with their groups. */
  bind?: Binding[];
  /** Subscriptions that drop every row they hold first (a snapshot follows). Each is bound by this poke or earlier. */
  resets?: string[];
  /** For limited subsets in `resets`: the predicate each was resolved to (resume with it). */
  subsets?: ResolvedSubset[];
}

export interface PokePart {
  type: "pokePart";
  pokeId: string;
  ops: OpBlock[];
}

export interface PokeEnd {
  type: "pokeEnd";
  pokeId: string;
  cursor: Cursor;
  /**
   * Outcomes of this socket's mutations whose effects are included in this
   * poke (the watermark travels with the data it confirms).
   */
  mutations?: MutationResult[];
}

/** A whole poke in one frame: `pokeStart` + `pokePart` + `pokeEnd` of a poke that fits. */
export interface Poke {
  type: "poke";
  pokeId: string;
  bind?: Binding[];
  resets?: string[];
  subsets?: ResolvedSubset[];
  ops: OpBlock[];
  cursor: Cursor;
  mutations?: MutationResult[];
}

/**
 * One op as a subscription receives it, after the client expanded the
 * blocks of a poke through its bindings (not a wire form): a whole row, a
 * patch (the key column plus the changed columns), or a delete. The client
 * builds these only when a handler reads `PokeUpdate.ops`; collections read
 * the shared blocks (`PokeUpdate.blocks`) instead.
 */
export type RowOp =
  | { op: "put"; sub: string; key: RowKey; row: Row }
  | { op: "patch"; sub: string; key: RowKey; row: Row }
  | { op: "del"; sub: string; key: RowKey };
