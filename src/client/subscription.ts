import type { Cursor, LunoraError, RowOp, Source } from "../protocol/index.js";

/** One poke's worth of changes for one subscription, applied in one step. */
export interface PokeUpdate {
  /** Drop every row the subscription holds before applying `ops` (a snapshot follows). */
  reset: boolean;
  /** Whole-row upserts (`put`) and deletes (`del`), in order. */
  ops: RowOp[];
  /** The position the subscription is at once `ops` are applied. */
  cursor: Cursor;
  /** Fingerprint of the identity the room sent these rows to. */
  identity?: string | undefined;
}

/**
 * The receiving end of a subscription, usually a collection. The client owns
 * the socket; the handler owns the rows and the cursor they correspond to.
 */
export interface SubscriptionHandler {
  /** Where to resume from, or `undefined` for a fresh snapshot. Read on every (re)subscribe. */
  cursor(): Cursor | undefined;
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
  /** Sends `subscribe` again from the handler's current cursor (for example after an error). */
  resubscribe(): void;
}
