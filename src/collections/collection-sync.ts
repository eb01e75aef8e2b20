import type { QueryCache } from "../cache/query-cache.js";
import type { CachedView, ViewSnapshot } from "../cache/types.js";
import { viewCacheKey } from "../cache/view-key.js";
import type { LunoraClient } from "../client/lunora-client.js";
import { reportListenerError } from "../client/listeners.js";
import type { PokeUpdate, Subscription } from "../client/subscription.js";
import { LunoraError, type Cursor, type Row, type RowKey, type Source } from "../protocol/index.js";
import { forEachRowOp, SyncedRows, type SyncParams } from "./synced-rows.js";

/** Where a collection reads from: exactly the location fields of `client.subscribe` (the runs spread it there). */
export interface SyncTarget {
  party: string;
  room: string;
  source: Source;
}

/** The query-cache key of a target's view (args compared canonically). */
export function targetCacheKey({ party, room, source }: SyncTarget): string {
  return viewCacheKey(party, room, source);
}

/** Collection metadata key under which the cursor of the synced rows is stored (for persistence). */
export const CURSOR_METADATA_KEY = "lunora:cursor";

/** What a sync run (eager or on-demand) is given besides TanStack's parameters. */
export interface SyncRunOptions<TRow extends object, TKey extends string | number> {
  client: LunoraClient<any>;
  getKey: (row: TRow) => TKey;
  onError: ((error: LunoraError) => void) | undefined;
  /** Called after anything `isAuthoritative` / `lastSyncedAt` report may have changed. */
  onSyncStateChange?: () => void;
}

/**
 * Subscription errors saying this identity may not read the view (any more):
 * rows restored from the cache for it must not stay on screen, nor on disk.
 */
export const VIEW_DENIED_CODES: ReadonlySet<string> = new Set(["FORBIDDEN", "SHAPE_NOT_FOUND", "INVALID_ARGS"]);

/**
 * One TanStack DB sync run of a Lunora collection (from `sync()` to its
 * cleanup). It owns the collection's synced rows and the cursor they
 * correspond to, and writes each poke as exactly one `begin` … `commit`.
 */
export class CollectionSyncRun<TRow extends object, TKey extends string | number> {
  readonly #params: SyncParams<TRow, TKey>;
  readonly #options: SyncRunOptions<TRow, TKey>;
  readonly #client: LunoraClient<any>;
  #target: SyncTarget | undefined;
  #subscription: Subscription | undefined;
  /** Identifies the live subscription's handler; calls from an older one are ignored. */
  #generation: object | undefined;
  #cursor: Cursor | undefined;
  readonly #synced: SyncedRows<TRow, TKey>;
  /** The query-cache key of the current target, when the client has a cache. */
  #viewKey: string | undefined;
  /** The rows came from the cache and no poke has confirmed them yet. */
  #fromCache = false;
  #authoritative = false;
  #ready = false;
  /** The identity the synced rows were read under (cache entry or room); rows of another are never kept. */
  #rowsIdentity: string | undefined;
  readonly #stopIdentityWatch: () => void;
  #lastSyncedAt: number | undefined;
  /** Keeps the room's socket open while the run moves between two views of one room. */
  #roomHold: { party: string; room: string; release: () => void } | undefined;

  constructor(params: SyncParams<TRow, TKey>, options: SyncRunOptions<TRow, TKey>) {
    this.#params = params;
    this.#options = options;
    this.#client = options.client;
    this.#synced = new SyncedRows(params, options.getKey);
    // Told synchronously, before a socket of the new identity subscribes, so
    // the subscribe carries no cursor of the old identity.
    this.#stopIdentityWatch = options.client.onIdentityChange((identity) => {
      if (this.#rowsIdentity === undefined || this.#rowsIdentity === identity) return;
      this.#dropCachedRows();
      this.#notifySyncState();
    });
  }

  get cursor(): Cursor | undefined {
    return this.#cursor;
  }

  get room(): string | undefined {
    return this.#target?.room;
  }

  get isAuthoritative(): boolean {
    return this.#authoritative;
  }

  get lastSyncedAt(): number | undefined {
    return this.#lastSyncedAt;
  }

  /**
   * Points the run at `target` (or nowhere): stops the old subscription, drops
   * its rows in one transaction, subscribes the new one from scratch — or,
   * with a query cache, first restores the new view's cached rows and
   * subscribes from their cursor.
   */
  point(target: SyncTarget | undefined): void {
    this.#settleCachedView();
    // Same room, other view: keep its socket open across the switch. The old
    // subscription may be the last one there, and dropping it would close the
    // socket only for the next subscribe to open a new one — a new handshake,
    // a new authentication, and an `idle` flicker in the status. The room is
    // also kept when the previous switch is still hydrating from the cache.
    const previousHold = this.#roomHold;
    this.#roomHold = undefined;
    const current = this.#subscription ?? previousHold;
    if (current && target && current.party === target.party && current.room === target.room) {
      const release = this.#client.retainRoom(target.room, target.party);
      this.#roomHold = { party: target.party, room: target.room, release };
    }
    previousHold?.release();
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#generation = undefined;
    if (this.#target !== undefined || this.#synced.present.size > 0 || this.#synced.diverged) this.#synced.drop();
    this.#forgetRows();
    this.#notifySyncState();
    this.#target = target;
    if (!target) return;

    const generation = {};
    this.#generation = generation;
    const cache = this.#client.queryCache;
    if (cache) {
      this.#viewKey = targetCacheKey(target);
      void this.#hydrateThenSubscribe(cache, target, generation);
    } else {
      this.#subscribe(target, generation);
    }
  }

  /** Ends the run (TanStack cleanup). */
  stop(): void {
    this.#stopIdentityWatch();
    this.#releaseRoomHold();
    this.#settleCachedView();
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#generation = undefined;
  }

  /**
   * Restores the view's cached rows (one sync transaction, then ready), and
   * only then subscribes, so the subscribe carries the cached cursor: the
   * room answers with what changed since, or a reset. The wait is bounded
   * (`hydrateTimeoutMs`); past it the subscription starts without the cache.
   */
  async #hydrateThenSubscribe(cache: QueryCache, target: SyncTarget, generation: object): Promise<void> {
    const view = await readCachedView(this.#client, cache, this.#viewKey!);
    if (this.#generation !== generation) return; // re-pointed or stopped meanwhile
    if (view) this.#hydrate(view);
    try {
      this.#subscribe(target, generation);
    } catch (error) {
      // sync() has returned: a throw here would be an unhandled rejection, not the app's error.
      this.#onError(asLunoraError(error));
    }
  }

  #hydrate(view: CachedView): void {
    const { begin, commit, metadata } = this.#params;
    const cursor: Cursor = { seq: view.serverCursor, epoch: view.epoch };
    begin();
    try {
      for (const [wireKey, row] of view.rows) this.#synced.write(wireKey, row as TRow);
      metadata?.collection.set(CURSOR_METADATA_KEY, cursor);
      commit();
    } catch {
      // A cached row this collection cannot take (e.g. getKey changed): start from a snapshot.
      this.#synced.abandonTransaction();
      this.#forgetRows();
      return;
    }
    this.#cursor = cursor;
    this.#rowsIdentity = view.identity;
    this.#fromCache = true;
    this.#authoritative = false; // until the room's first poke confirms or corrects it
    this.#lastSyncedAt = view.ts;
    this.#markReadyOnce();
    this.#notifySyncState();
  }

  #releaseRoomHold(): void {
    const hold = this.#roomHold;
    this.#roomHold = undefined;
    hold?.release();
  }

  #subscribe(target: SyncTarget, generation: object): void {
    try {
      this.#subscription = this.#client.subscribe({
        ...target,
        handler: {
          cursor: () => (this.#generation === generation ? this.#cursor : undefined),
          applyPoke: (update) => {
            if (this.#generation === generation) this.#applyPoke(update);
          },
          // TanStack DB's own mechanism for a coherent multi-collection commit
          // (what its live queries use): state commits at once, change events
          // wait until every collection of the poke has committed.
          deferPublication: () => (this.#generation === generation ? this.#params.collection._deferPublication() : undefined),
          onError: (error) => {
            if (this.#generation === generation) this.#onError(error);
          },
          onIdentityChange: () => {
            if (this.#generation !== generation) return;
            // Nothing read under the old identity stays on screen for the new
            // one. (The query cache clears itself on the identity change.)
            this.#dropCachedRows();
            this.#notifySyncState();
          },
        },
      });
    } finally {
      // The new subscription holds the socket now (or failed: then nothing should).
      this.#releaseRoomHold();
    }
  }

  /** The synced rows and their cursor, for the query cache; `undefined` while they are not the server's state. */
  #snapshot(generation: object | undefined): ViewSnapshot | undefined {
    if (this.#generation !== generation || !this.#authoritative || !this.#cursor) return undefined;
    return { cursor: this.#cursor, rows: [...this.#synced.rows] as Array<[RowKey, Row]> };
  }

  /** Fixes the current view's pending cache write before its rows go away. */
  #settleCachedView(): void {
    if (this.#viewKey !== undefined) this.#client.queryCache?.settle(this.#viewKey);
    this.#viewKey = undefined;
  }

  #notifySyncState(): void {
    callListener(this.#options.onSyncStateChange);
  }

  /**
   * Writes one poke as one sync transaction, reading the subscription's
   * blocks in place: a put is written as received, a patch merged into the
   * held row (`{ ...held, ...patch }`, one `update`), a delete by key.
   */
  #applyPoke({ reset, blocks, keyColumn, cursor, identity }: PokeUpdate): void {
    if (!reset && blocks.length === 0) {
      // Nothing of this view changed, only its position moves. A poke covers
      // every subscription of its socket and most have nothing new in it: no
      // sync transaction, no change event, no cache write (the cached cursor
      // may lag behind; a resume from it is still exact).
      if (identity !== undefined) this.#rowsIdentity = identity;
      this.#confirm(cursor, false);
      return;
    }
    const { begin, commit, metadata } = this.#params;
    const synced = this.#synced;
    begin();
    try {
      if (reset) {
        // Only when there is something to drop (not on a first snapshot):
        // after a truncate TanStack DB reloads every ordered live-query window
        // from its full source, and the live queries stay costlier to update
        // afterwards (measured on W1: ~15% more CPU per poke).
        synced.truncateForReset();
        this.#forgetRows();
      }
      forEachRowOp<TRow>(
        blocks,
        keyColumn,
        (key) => synced.rows.get(key),
        (key, row) => synced.write(key, row),
        (key) => synced.write(key, undefined),
      );
      metadata?.collection.set(CURSOR_METADATA_KEY, cursor);
      commit();
      if (identity !== undefined) this.#rowsIdentity = identity;
    } catch (error) {
      synced.abandonTransaction();
      // The client resets and resubscribes this subscription when applyPoke throws.
      this.#authoritative = false;
      this.#notifySyncState();
      throw error;
    }
    this.#confirm(cursor, true);
  }

  /** The rows are the room's state at `cursor`; `changed`: they changed, so the cache entry is rewritten. */
  #confirm(cursor: Cursor, changed: boolean): void {
    this.#cursor = cursor;
    this.#authoritative = true;
    this.#fromCache = false;
    this.#lastSyncedAt = Date.now();
    this.#markReadyOnce();
    if (changed && this.#viewKey !== undefined) {
      const generation = this.#generation;
      this.#client.queryCache?.schedule(this.#viewKey, () => this.#snapshot(generation));
    }
    this.#notifySyncState();
  }

  #onError(error: LunoraError): void {
    this.#authoritative = false;
    if (VIEW_DENIED_CODES.has(error.code) && this.#viewKey !== undefined) {
      this.#client.queryCache?.remove(this.#viewKey);
      if (this.#fromCache) this.#dropCachedRows();
    }
    this.#notifySyncState();
    callListener(this.#options.onError, error);
    // A failed subscription will not deliver a snapshot; without this,
    // preload() and live queries would wait forever.
    this.#markReadyOnce();
  }

  #markReadyOnce(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#params.markReady();
  }

  /** The room refused the view: the rows restored from the cache were never confirmed and go. */
  #dropCachedRows(): void {
    this.#synced.drop();
    this.#forgetRows();
  }

  #forgetRows(): void {
    this.#rowsIdentity = undefined;
    this.#synced.clear();
    this.#fromCache = false;
    this.#cursor = undefined;
    this.#authoritative = false;
  }
}

/**
 * The cached entry under `key`, or `undefined` when the read takes longer
 * than the cache's `hydrateTimeoutMs` (the subscription then starts without
 * it) or the entry is not of the identity current now: the app may have
 * switched accounts while it was read.
 */
export async function readCachedView(client: LunoraClient<any>, cache: QueryCache, key: string): Promise<CachedView | undefined> {
  const identityGeneration = client.identityGeneration;
  const view = await withTimeout(cache.read(key), cache.settings.hydrateTimeoutMs);
  return view && client.identityGeneration === identityGeneration && view.identity === (await client.identity().catch(() => undefined)) ? view : undefined;
}

/** Calls an app's callback; a throw is reported, never unwound into the sync run. */
export function callListener<Args extends unknown[]>(listener: ((...args: Args) => void) | undefined, ...args: Args): void {
  try {
    listener?.(...args);
  } catch (thrown) {
    reportListenerError(thrown);
  }
}

/** `error` as a coded error (`INTERNAL` when it is not one). */
export function asLunoraError(error: unknown): LunoraError {
  return error instanceof LunoraError ? error : new LunoraError("INTERNAL", String(error));
}

/** `promise`'s value, or `undefined` once `ms` pass first. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
