import type { LoadSubsetOptions } from "@tanstack/db";
import type { QueryCache } from "../cache/query-cache.js";
import type { CachedView, ViewSnapshot } from "../cache/types.js";
import { subsetCacheKey } from "../cache/view-key.js";
import type { LunoraClient } from "../client/lunora-client.js";
import { reportListenerError } from "../client/listeners.js";
import type { PokeGroup, PokeUpdate, Subscription, SubscriptionHandler } from "../client/subscription.js";
import type { Cursor, LunoraError, OpBlock, Row, RowKey, Subset, Where } from "../protocol/index.js";
import { asLunoraError, callListener, readCachedView, targetCacheKey, VIEW_DENIED_CODES, type SyncRunOptions, type SyncTarget } from "./collection-sync.js";
import { compileSubset, subsetKey } from "./subset-where.js";
import { forEachRowOp, SyncedRows, type SyncParams } from "./synced-rows.js";

/**
 * What {@link OnDemandSyncRun} applies to one subset: a poke's update (its
 * group's blocks), or rows restored from the query cache under their keys
 * (`cached`), or neither (a release: `reset` alone, no position).
 */
interface SubsetUpdate {
  reset: boolean;
  cursor?: Cursor;
  identity?: string | undefined;
  resolved?: Where | undefined;
  blocks?: readonly OpBlock[];
  keyColumn?: string;
  cached?: ReadonlyArray<readonly [RowKey, Row]>;
}

/**
 * One loaded subset: one Lunora subscription on the collection's target,
 * shared by every `loadSubset` that compiled to the same wire subset.
 */
interface LoadedSubset {
  /** Canonical JSON of {@link requested}: the refcount and cache key. */
  readonly key: string;
  /** What `loadSubset` asked for (compiled). */
  readonly requested: Subset;
  /** The predicate the room resolved a limited subset to; resumes use it. */
  resolved?: Where | undefined;
  /** `loadSubset` calls not yet matched by `unloadSubset`. */
  refs: number;
  /** Wire keys of the rows this subset holds. */
  readonly rows: Set<RowKey>;
  cursor?: Cursor | undefined;
  subscription?: Subscription | undefined;
  /** Identifies the current subscription; calls of an older handler are ignored. */
  generation?: object | undefined;
  cacheKey?: string | undefined;
  authoritative: boolean;
  fromCache: boolean;
  /** Settled once the first poke (or the cached rows) is applied. */
  loaded: boolean;
  /** The error that failed the first load; later loads of the subset reject with it. */
  error?: LunoraError | undefined;
  /**
   * Served by the whole shape (see `#consolidate`): no subscription of its
   * own, no rows of its own once the whole shape is in.
   */
  covered: boolean;
  readonly done: Promise<void>;
  resolve: (value: void | Promise<void>) => void;
  reject: (error: unknown) => void;
}

/**
 * The sync run of a collection with `syncMode: "on-demand"`: no whole-shape
 * subscription, one subscription per distinct subset the collection's
 * queries load.
 *
 * Rows are counted across subsets: a row is in the collection while at least
 * one loaded subset holds it, so a `del` from one subset (or its reset, or
 * its unload) keeps a row another still holds. The subsets of the collection
 * share one {@link PokeGroup}: the room connection hands a poke's updates for
 * all of them over in one call, applied as ONE sync transaction — a row that
 * moves from one subset to another in a poke is never seen deleted.
 */
export class OnDemandSyncRun<TRow extends object, TKey extends string | number> {
  readonly #params: SyncParams<TRow, TKey>;
  readonly #options: SyncRunOptions<TRow, TKey>;
  readonly #client: LunoraClient<any>;
  #target: SyncTarget | undefined;
  readonly #subsets = new Map<string, LoadedSubset>();
  /** Handler → its subset and the generation it was made for (a re-pointed subset's old handler is stale). */
  readonly #byHandler = new WeakMap<SubscriptionHandler, { subset: LoadedSubset; generation: object }>();
  /** Wire key → how many loaded subsets hold the row. */
  readonly #holders = new Map<RowKey, number>();
  /** The room's rows, as last received, that some loaded subset holds. */
  readonly #synced: SyncedRows<TRow, TKey>;
  #rowsIdentity: string | undefined;
  #lastSyncedAt: number | undefined;
  #stopped = false;
  /** The whole-shape subset the run fell back to when the room would take no more subsets (see `#consolidate`). */
  #whole: LoadedSubset | undefined;
  readonly #stopIdentityWatch: () => void;
  readonly #group: PokeGroup;

  constructor(params: SyncParams<TRow, TKey>, options: SyncRunOptions<TRow, TKey>) {
    this.#params = params;
    this.#options = options;
    this.#client = options.client;
    this.#synced = new SyncedRows(params, options.getKey);
    this.#group = {
      applyPokes: (updates) => {
        const items: Array<{ subset: LoadedSubset; update: SubsetUpdate }> = [];
        for (const { handler, update } of updates) {
          const owner = this.#byHandler.get(handler);
          if (owner && owner.subset.generation === owner.generation) items.push({ subset: owner.subset, update });
        }
        // On a failure the connection subscribes these again itself (with reset).
        if (items.length > 0) this.#apply(items, { fromCache: false, restartedByCaller: true });
      },
      // TanStack DB's multi-collection commit: state now, events once the whole poke is in.
      deferPublication: () => (this.#stopped ? undefined : this.#params.collection._deferPublication()),
    };
    this.#stopIdentityWatch = options.client.onIdentityChange((identity) => {
      if (this.#rowsIdentity === undefined || this.#rowsIdentity === identity) return;
      this.#dropAllRows();
    });
    // Nothing loads until a query asks: the collection is usable (empty) now.
    params.markReady();
  }

  get cursor(): Cursor | undefined {
    let latest: Cursor | undefined;
    for (const subset of this.#subsets.values()) if (subset.cursor && (!latest || subset.cursor.seq > latest.seq)) latest = subset.cursor;
    return latest;
  }

  get room(): string | undefined {
    return this.#target?.room;
  }

  /** Every loaded subset is the server's state (vacuously true with none loaded). */
  get isAuthoritative(): boolean {
    if (!this.#target) return false;
    for (const subset of this.#subsets.values()) if (!subset.authoritative) return false;
    return true;
  }

  get lastSyncedAt(): number | undefined {
    return this.#lastSyncedAt;
  }

  /** TanStack's `loadSubset`: resolves once the subset's rows are applied (from the room or the cache). */
  loadSubset(options: LoadSubsetOptions): true | Promise<void> {
    const requested = compileSubset(options);
    const key = subsetKey(requested);
    const existing = this.#subsets.get(key);
    if (existing) {
      existing.refs++;
      if (existing.loaded) return true;
      return existing.error ? Promise.reject(existing.error) : existing.done;
    }
    const subset = newSubset(key, requested);
    this.#subsets.set(key, subset);
    if (this.#whole !== undefined) return this.#cover(subset, this.#whole);
    if (!this.#target) {
      // Detached (scoped, no scope yet): nothing to wait for; a later scope() loads it.
      subset.loaded = true;
      return true;
    }
    try {
      this.#start(subset, this.#target);
    } catch (error) {
      // Release what was acquired before throwing (TanStack's loadSubset contract).
      this.#subsets.delete(key);
      subset.subscription?.unsubscribe();
      throw error;
    }
    return subset.loaded ? true : subset.done;
  }

  /** TanStack's `unloadSubset`: at the last release, stops the subscription and drops rows no other subset holds. */
  unloadSubset(options: LoadSubsetOptions): void {
    try {
      const key = subsetKey(compileSubset(options));
      const subset = this.#subsets.get(key);
      if (!subset) return;
      subset.refs--;
      if (subset.refs > 0) return;
      this.#subsets.delete(key);
      this.#retire(subset);
      this.#releaseRows(subset);
      settleLoad(subset);
      this.#notifySyncState();
    } catch (thrown) {
      // Must not throw (TanStack's unloadSubset contract).
      reportListenerError(thrown);
    }
  }

  /**
   * Points the run at `target`: every loaded subset stops at the old target,
   * the rows go in one transaction, and each subset subscribes again at the
   * new one (from its cached entry there, when the client has a cache).
   */
  point(target: SyncTarget | undefined): void {
    const previous = this.#target;
    let hold: (() => void) | undefined;
    if (previous && target && previous.party === target.party && previous.room === target.room && this.#subsets.size > 0) {
      // Same room, other view: keep its socket open across the switch (see CollectionSyncRun.point).
      hold = this.#client.retainRoom(target.room, target.party);
    }
    for (const subset of this.#subsets.values()) {
      this.#retire(subset);
      subset.resolved = undefined;
    }
    this.#target = target;
    // The rows go by delete, not truncate (see #dropAllRows); every subset
    // is started again a microtask later, unless TanStack DB reloaded it
    // meanwhile (at the new target, since #target is already set), so none
    // is subscribed twice.
    this.#dropAllRows(true);
    if (!target) {
      // (No room is held: holding needs a target.)
      for (const subset of this.#subsets.values()) settleLoad(subset);
      this.#notifySyncState();
      return;
    }
    queueMicrotask(() => {
      const starts: Array<Promise<void>> = [];
      if (!this.#stopped && this.#target === target) {
        for (const subset of this.#subsets.values()) {
          if (subset.generation !== undefined) continue; // already (re)started
          if (subset.covered) continue; // served by the whole shape
          try {
            starts.push(this.#start(subset, target));
          } catch (error) {
            this.#onSubsetError(subset, asLunoraError(error));
          }
        }
      }
      if (hold) void Promise.allSettled(starts).then(hold);
    });
    this.#notifySyncState();
  }

  stop(): void {
    this.#stopped = true;
    this.#stopIdentityWatch();
    for (const subset of this.#subsets.values()) this.#retire(subset);
  }

  // ---- one subset's subscription -------------------------------------------

  /** Starts `subset` at `target`; resolves once it has subscribed (after the cache read, with a cache). */
  #start(subset: LoadedSubset, target: SyncTarget): Promise<void> {
    const generation = {};
    subset.generation = generation;
    const cache = this.#client.queryCache;
    if (!cache) {
      this.#subscribe(subset, target, generation);
      return Promise.resolve();
    }
    subset.cacheKey = subsetCacheKey(targetCacheKey(target), subset.key);
    return this.#hydrateThenSubscribe(cache, subset, target, generation);
  }

  async #hydrateThenSubscribe(cache: QueryCache, subset: LoadedSubset, target: SyncTarget, generation: object): Promise<void> {
    const view = await readCachedView(this.#client, cache, subset.cacheKey!);
    if (subset.generation !== generation) return; // re-pointed, unloaded or stopped meanwhile
    if (view) this.#hydrate(subset, view);
    try {
      this.#subscribe(subset, target, generation);
    } catch (error) {
      this.#onSubsetError(subset, asLunoraError(error));
    }
  }

  #hydrate(subset: LoadedSubset, view: CachedView): void {
    const cursor: Cursor = { seq: view.serverCursor, epoch: view.epoch };
    try {
      this.#apply([{ subset, update: { reset: true, cached: view.rows, cursor, identity: view.identity, resolved: view.resolvedWhere } }], { fromCache: true });
    } catch {
      // A cached row this collection cannot take: the subscription starts from a snapshot.
      return;
    }
    this.#lastSyncedAt = view.ts;
  }

  #subscribe(subset: LoadedSubset, target: SyncTarget, generation: object): void {
    const handler: SubscriptionHandler = {
      cursor: () => (subset.generation === generation ? subset.cursor : undefined),
      // Read on every (re)subscribe: after the first reset the resolved predicate, without limit.
      subset: () => (subset.resolved !== undefined ? { where: subset.resolved } : subset.requested),
      applyPoke: (update) => this.#group.applyPokes([{ handler, update }]),
      pokeGroup: this.#group,
      onError: (error) => {
        if (subset.generation === generation) this.#onSubsetError(subset, error);
      },
      onIdentityChange: () => {
        if (subset.generation === generation) this.#dropAllRows();
      },
    };
    this.#byHandler.set(handler, { subset, generation });
    subset.subscription = this.#client.subscribe({ ...target, handler });
  }

  /** Stops a subset's subscription and fixes its pending cache write; its rows stay counted. */
  #retire(subset: LoadedSubset): void {
    if (subset.cacheKey !== undefined) this.#client.queryCache?.settle(subset.cacheKey);
    subset.generation = undefined;
    subset.subscription?.unsubscribe();
    subset.subscription = undefined;
  }

  #onSubsetError(subset: LoadedSubset, error: LunoraError): void {
    if (error.code === "QUOTA_EXCEEDED" && this.#consolidate(subset)) return;
    subset.authoritative = false;
    if (VIEW_DENIED_CODES.has(error.code) && subset.cacheKey !== undefined) {
      this.#client.queryCache?.remove(subset.cacheKey);
      if (subset.fromCache && subset.rows.size > 0) {
        this.#releaseRows(subset);
        subset.cursor = undefined;
        subset.fromCache = false;
      }
    }
    if (!subset.loaded) {
      subset.error = error;
      subset.reject(error);
    }
    this.#notifySyncState();
    callListener(this.#options.onError, error);
  }

  /**
   * The room refused a subset with `QUOTA_EXCEEDED`: the socket holds as
   * many subscriptions, or as large an attachment, as the room allows (each
   * "load older" page is a subset of its own). Rather than fail the query,
   * the collection falls back to the wider load: it stops every subset's
   * subscription, loads the whole shape once (the `{}` subset, which holds
   * every row any subset could), and serves every loaded and later subset
   * from it. Rows stay held by their old subsets until the whole shape is in,
   * so nothing disappears in between. Returns false when there is nothing
   * wider to fall back to (the whole shape itself was refused).
   */
  #consolidate(failed: LoadedSubset): boolean {
    if (this.#whole !== undefined) {
      // Already consolidated (a subscribe that was on its way when it happened).
      if (failed === this.#whole) return false;
      this.#retire(failed);
      this.#cover(failed, this.#whole);
      return true;
    }
    const wholeKey = subsetKey({});
    if (failed.key === wholeKey || !this.#target) return false;
    let whole = this.#subsets.get(wholeKey);
    if (whole === undefined) {
      whole = newSubset(wholeKey, {});
      this.#subsets.set(wholeKey, whole);
    } else whole.refs++; // the run's own hold, never released while consolidated
    this.#whole = whole;
    const covered: LoadedSubset[] = [];
    for (const subset of this.#subsets.values()) {
      if (subset === whole) continue;
      // Its subscription goes first: that frees the room's slots for the whole shape.
      this.#retire(subset);
      covered.push(subset);
    }
    if (whole.generation === undefined) this.#start(whole, this.#target);
    for (const subset of covered) this.#cover(subset, whole);
    return true;
  }

  /**
   * Serves `subset` from the whole shape: settles with it, then gives up its
   * own rows. Returns what TanStack awaits for a new load: `subset.done`,
   * which cannot become an unhandled rejection (see `newSubset`), so callers
   * that hold no load may drop it.
   */
  #cover(subset: LoadedSubset, whole: LoadedSubset): true | Promise<void> {
    subset.covered = true;
    const settle = () => {
      if (this.#subsets.get(subset.key) === subset) this.#releaseRows(subset);
      subset.authoritative = whole.authoritative;
      settleLoad(subset);
    };
    if (whole.loaded) {
      settle();
      return true;
    }
    void whole.done.then(settle, (error: unknown) => {
      subset.error = asLunoraError(error);
      subset.reject(subset.error);
    });
    return subset.done;
  }

  // ---- rows ----------------------------------------------------------------

  /**
   * Applies updates of several subsets as one sync transaction. Each subset's
   * holdings change first (a reset releases all it held); only then is each
   * touched row written once, from its final count: held → upsert of its
   * latest image, held by none → delete. A patch (via any subset that holds
   * the row) merges into the shared row, so every subset sees it.
   */
  #apply(items: Array<{ subset: LoadedSubset; update: SubsetUpdate }>, mode: { fromCache?: boolean; release?: boolean; restartedByCaller?: boolean }): void {
    const { begin, commit } = this.#params;
    const synced = this.#synced;
    const touched = new Set<RowKey>();
    // Nothing changed in any subset (a poke covers every subscription of its
    // socket): only their positions move, without a sync transaction.
    const changed = items.some(({ update }) => update.reset || update.cached !== undefined || (update.blocks?.length ?? 0) > 0);
    let receipt: true | Promise<void> = true;
    if (changed) {
      begin();
      try {
        for (const { subset, update } of items) {
          if (update.reset) {
            for (const key of subset.rows) {
              this.#release(key);
              touched.add(key);
            }
            subset.rows.clear();
          }
          if (update.cached) {
            for (const [key, row] of update.cached) {
              // A row another subset holds is the room's at the socket's latest
              // poke, at least as recent as this cache entry: the cached image
              // must not replace it (it would outlive this subset's release of
              // the row). This subset's resume brings what changed since.
              this.#hold(subset, key, this.#holders.has(key) ? synced.rows.get(key)! : (row as TRow), touched);
            }
          }
          if (update.blocks) {
            forEachRowOp<TRow>(
              update.blocks,
              update.keyColumn!,
              // Patched through a subset that holds the row: merged into the shared row.
              (key) => (subset.rows.has(key) ? synced.rows.get(key) : undefined),
              (key, row) => this.#hold(subset, key, row, touched),
              (key) => {
                touched.add(key);
                if (subset.rows.delete(key)) this.#release(key);
              },
            );
          }
        }
        // Each touched row once, from its final count: held → its latest image, held by none → deleted.
        for (const key of touched) synced.write(key, this.#holders.has(key) ? synced.rows.get(key) : undefined);
        receipt = commit();
      } catch (error) {
        synced.abandonTransaction();
        // The counts no longer match the collection: start every subset over —
        // once: the subsets of a failed poke the connection resubscribes itself.
        this.#dropAllRows();
        const restarted = mode.restartedByCaller ? new Set(items.map(({ subset }) => subset)) : undefined;
        for (const subset of this.#subsets.values()) if (!restarted?.has(subset)) subset.subscription?.resubscribe();
        this.#notifySyncState();
        throw error;
      }
    }
    if (mode.release) return;
    for (const { subset, update } of items) {
      subset.cursor = update.cursor;
      if (update.resolved !== undefined) subset.resolved = update.resolved;
      else if (update.reset && subset.requested.limit && subset.resolved === undefined) {
        // A limited subset reset without a reported cut has none: it is its `where`.
        subset.resolved = subset.requested.where === undefined ? true : (subset.requested.where as Where);
      }
      subset.authoritative = !mode.fromCache;
      subset.fromCache = mode.fromCache === true;
      subset.error = undefined;
      if (update.identity !== undefined) this.#rowsIdentity = update.identity;
      // TanStack's contract: the load settles when its commit is visible.
      settleLoad(subset, receipt === true ? undefined : receipt);
      if (changed && !mode.fromCache && subset.cacheKey !== undefined) {
        const generation = subset.generation;
        this.#client.queryCache?.schedule(subset.cacheKey, () => this.#snapshot(subset, generation));
      }
    }
    if (!mode.fromCache) this.#lastSyncedAt = Date.now();
    this.#notifySyncState();
  }

  /**
   * Gives up every row `subset` holds, in one transaction (a row no other
   * subset holds is deleted); its position stays. A failure is reported, not
   * thrown: the failed apply has started every subset over already.
   */
  #releaseRows(subset: LoadedSubset): void {
    if (subset.rows.size === 0) return;
    try {
      this.#apply([{ subset, update: { reset: true } }], { release: true });
    } catch (thrown) {
      reportListenerError(thrown);
    }
  }

  /** `subset` holds `row` under `key` now (its latest image for every subset). */
  #hold(subset: LoadedSubset, key: RowKey, row: TRow, touched: Set<RowKey>): void {
    touched.add(key);
    this.#synced.rows.set(key, row);
    if (subset.rows.has(key)) return;
    subset.rows.add(key);
    this.#holders.set(key, (this.#holders.get(key) ?? 0) + 1);
  }

  #release(key: RowKey): void {
    const holders = (this.#holders.get(key) ?? 1) - 1;
    if (holders > 0) this.#holders.set(key, holders);
    else this.#holders.delete(key);
  }

  /**
   * Drops every row and cursor. `byDelete` (a re-point) writes one delete per
   * row instead of a truncate: after a truncate TanStack DB repairs each
   * ordered window with a full-source load (the whole `where`, no limit), so
   * switching a scoped collection to another room would load that room's
   * whole history for a window of 30. The subsets restart at the new target
   * on their own (see `point`).
   */
  #dropAllRows(byDelete = false): void {
    const synced = this.#synced;
    if (synced.present.size > 0 || synced.keys.size > 0 || synced.diverged) synced.drop(byDelete);
    this.#holders.clear();
    synced.clear();
    this.#rowsIdentity = undefined;
    for (const subset of this.#subsets.values()) {
      subset.rows.clear();
      subset.cursor = undefined;
      subset.authoritative = false;
      subset.fromCache = false;
      // A cut resolved for one identity (or view) is not the next one's.
      subset.resolved = undefined;
    }
    this.#notifySyncState();
  }

  #snapshot(subset: LoadedSubset, generation: object | undefined): ViewSnapshot | undefined {
    if (subset.generation !== generation || !subset.authoritative || !subset.cursor) return undefined;
    const rows: Array<[RowKey, Row]> = [];
    for (const key of subset.rows) {
      const row = this.#synced.rows.get(key);
      if (row) rows.push([key, row as Row]);
    }
    // The cache stores `resolvedWhere` only when there is one.
    return { cursor: subset.cursor, rows, resolvedWhere: subset.resolved };
  }

  #notifySyncState(): void {
    callListener(this.#options.onSyncStateChange);
  }
}

/** Settles `subset`'s load once: TanStack's load promise resolves (when the commit `receipt` is visible). */
function settleLoad(subset: LoadedSubset, receipt?: Promise<void>): void {
  if (subset.loaded) return;
  subset.loaded = true;
  subset.resolve(receipt);
}

function newSubset(key: string, requested: Subset): LoadedSubset {
  let resolve!: (value: void | Promise<void>) => void;
  let reject!: (error: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A load nobody awaits any more (unloaded first) must not become an unhandled rejection.
  done.catch(() => undefined);
  return { key, requested, refs: 1, rows: new Set(), authoritative: false, fromCache: false, loaded: false, covered: false, done, resolve, reject };
}
