import type { Cursor, LunoraError, OpBlock, RowOp, Source, Subset, Where } from "../protocol/index.js";

/** One poke's worth of changes for one subscription, applied in one step. */
export interface PokeUpdate {
  /** Drop every row the subscription holds before applying the ops (a snapshot follows). */
  reset: boolean;
  /**
   * The subscription's ops in order, one object each: whole-row upserts
   * (`put`), patches (`patch`: the key column plus the columns that changed,
   * to merge into the held row) and deletes (`del`). Built on first read
   * from {@link blocks}; handlers on a hot path read those instead.
   */
  readonly ops: readonly RowOp[];
  /**
   * The same ops as the room sent them: the blocks of the subscription's
   * group, `[group, kind, ...items]` (kind `"p"` rows, `"u"` patches, `"d"`
   * keys; items from index 2), checked against its binding. Shared with
   * every subscription of the socket bound to the same group: never change
   * them.
   */
  blocks: readonly OpBlock[];
  /** The key column of the subscription's rows: a put's or patch's key is `row[keyColumn]`. */
  keyColumn: string;
  /** The position the subscription is at once `ops` are applied. */
  cursor: Cursor;
  /** Fingerprint of the identity the room sent these rows to. */
  identity?: string | undefined;
  /**
   * For a limited subset being reset: the predicate the room resolved its
   * cut to (`subsets` of the poke). Resume with `subset: { where: resolved }`
   * from now on, so the subset keeps naming the same rows.
   */
  resolved?: Where | undefined;
}

/**
 * Handlers that share one group (the subsets of one on-demand collection)
 * receive one poke's updates together, in one call, so the group applies
 * them as one sync transaction: a row moving from one subset to another in
 * a poke is never seen deleted in between.
 */
export interface PokeGroup {
  /** Applies one poke's updates for the group's subscriptions it covers (in the poke's order). */
  applyPokes(updates: ReadonlyArray<{ handler: SubscriptionHandler; update: PokeUpdate }>): void;
  /** As {@link SubscriptionHandler.deferPublication}, once for the whole group. */
  deferPublication?(): { publish(): void; discard(): void } | undefined;
}

/**
 * The receiving end of a subscription, usually a collection. The client owns
 * the socket; the handler owns the rows and the cursor they correspond to.
 */
export interface SubscriptionHandler {
  /** Where to resume from, or `undefined` for a fresh snapshot. Read on every (re)subscribe. */
  cursor(): Cursor | undefined;
  /**
   * The subset to read (on-demand sync), read on every (re)subscribe: it
   * changes from `{ where, limit }` to the resolved `{ where }` once the
   * room reported the cut. Overrides {@link SubscribeOptions.subset}.
   */
  subset?(): Subset | undefined;
  /**
   * Set on handlers whose pokes must be applied together (see
   * {@link PokeGroup}); their {@link applyPoke} is then not called.
   */
  pokeGroup?: PokeGroup;
  /**
   * Applies one poke. Called synchronously, in one loop for every
   * subscription a poke covers, so no reader can observe half a poke. If it
   * throws, the subscription is reset and subscribed again without cursor.
   */
  applyPoke(update: PokeUpdate): void;
  /**
   * Holds back the change events of what {@link applyPoke} commits until
   * `publish()` — called once every subscription of the poke has applied —
   * so a poke that changes several collections is seen whole: a listener or
   * a live query reacting to one collection already finds the others
   * changed. Optional (handlers that are not collections need none).
   */
  deferPublication?(): { publish(): void; discard(): void } | undefined;
  /** A coded error concerning this subscription (denied read, bad args, bound hit…). */
  onError(error: LunoraError): void;
  /**
   * The socket is about to reconnect under another identity: drop every row
   * and the cursor now (they were read under the old identity, which may see
   * rows the new one may not). The room then sends a fresh snapshot.
   */
  onIdentityChange?(): void;
}

/** What {@link LunoraClient.subscribe} takes. */
export interface SubscribeOptions {
  /** The room (shard key), e.g. a channel id. */
  room: string;
  /** The party (Durable Object binding); defaults to the client's `party`. */
  party?: string;
  /** What to read: `{ list: table }` or `{ shape: name, args }`. */
  source: Source;
  /**
   * Only part of a shape (on-demand sync): rows matching `where`, or the
   * first `limit.count` of them. See `Subset` in the protocol. The handler's
   * `subset()`, when present, is read instead on every (re)subscribe.
   */
  subset?: Subset;
  handler: SubscriptionHandler;
}

/** A live subscription returned by {@link LunoraClient.subscribe}. */
export interface Subscription {
  /** Short id, unique in this client, stable for the subscription's lifetime. */
  readonly id: string;
  readonly room: string;
  readonly party: string;
  /** Stops it; the room's socket closes when its last subscription goes. Idempotent. */
  unsubscribe(): void;
  /**
   * Sends `subscribe` again from the handler's current cursor (for example
   * after an error). When the handler has no cursor (it dropped its rows),
   * pokes are skipped until the room's reset answers this subscribe.
   */
  resubscribe(): void;
}

/**
 * Expands a subscription's blocks into {@link RowOp}s (for handlers that
 * read {@link PokeUpdate.ops}).
 */
export function rowOpsOf(sub: string, keyColumn: string, blocks: readonly OpBlock[]): RowOp[] {
  const ops: RowOp[] = [];
  for (const block of blocks) {
    const kind = block[1];
    for (let i = 2; i < block.length; i++) {
      if (kind === "d") ops.push({ op: "del", sub, key: block[i] as string | number });
      else {
        const row = block[i] as Record<string, unknown>;
        ops.push({ op: kind === "p" ? "put" : "patch", sub, key: row[keyColumn] as string | number, row });
      }
    }
  }
  return ops;
}
