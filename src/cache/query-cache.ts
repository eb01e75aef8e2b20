import { utf8Length } from "../protocol/frames.js";
import { unrefTimer } from "../client/keepalive.js";
import { Listeners, reportListenerError } from "../client/listeners.js";
import { LunoraError } from "../protocol/index.js";
import {
  DEFAULT_QUERY_CACHE_LIMITS,
  type CachedView,
  type CachedViewRecord,
  type QueryCacheOptions,
  type QueryCacheSettings,
  type QueryCacheStats,
  type QueryCacheStorage,
  type ViewSnapshot,
} from "./types.js";

/** Extra options of the factories: where failures go. */
export interface QueryCacheErrorOptions {
  /**
   * Storage failures (`STORAGE_FAILURE`, `QUOTA_EXCEEDED`). The cache keeps
   * working in memory-less mode: reads miss, the failed batch is dropped.
   * Default: `console.warn`.
   */
  onError?: (error: LunoraError) => void;
}

/**
 * Where a query cache stands:
 * - `idle`: not attached to a client yet, or waiting for an identity (the
 *   client's `auth()` failed so far; the cache opens as soon as a token is read);
 * - `opening`: resolving the identity and opening storage;
 * - `ready`: reads hydrate and writes are stored;
 * - `failed`: storage cannot be opened (`error` says why); the app works
 *   online without offline reads;
 * - `closed`: after `close()`.
 */
export type QueryCacheStatus = "idle" | "opening" | "ready" | "failed" | "closed";

/** A pending write: a live view (a function, read at flush time), a fixed snapshot, or a removal (`null`). */
type Pending = (() => ViewSnapshot | undefined) | ViewSnapshot | null;

interface OpenState {
  storage: QueryCacheStorage;
  identity: string;
  /** Every stored entry's record, in LRU order (least recently used first). */
  index: Map<string, CachedViewRecord>;
  bytes: number;
}

/**
 * The offline read cache of a {@link LunoraClient}: one entry per collection
 * view with the synced rows, the cursor they stand at and the identity they
 * were read under. Create it with `createIndexedDbQueryCache()` or
 * `createInMemoryQueryCache()` and pass it as the client's `queryCache`;
 * collections use it by themselves.
 *
 * - Reads hydrate a collection before its socket opens; only entries of the
 *   current identity are read, and finding another identity's entries
 *   clears the whole cache.
 * - Writes are debounced and batched: a burst of pokes over many views is
 *   one storage transaction. The rows are read from the collection when the
 *   batch is written, so a burst costs one serialization, not one per poke.
 * - Entries are capped by count and by bytes, least recently written first.
 *
 * One cache serves one client at a time.
 */
export class QueryCache {
  readonly settings: Readonly<QueryCacheSettings>;
  readonly stats: QueryCacheStats = { flushes: 0, written: 0, evicted: 0, hydrated: 0, identityClears: 0 };

  readonly #openStorage: () => Promise<QueryCacheStorage>;
  readonly #onError: (error: LunoraError) => void;
  #resolveIdentity: (() => Promise<string>) | undefined;
  /** The identity the client last noticed; used when resolving it anew fails (offline token fetch). */
  #knownIdentity: string | undefined;
  #ready: Promise<OpenState | undefined> | undefined;
  /** Storage is opened once; an attempt that failed for want of an identity keeps it for the next. */
  #storage: Promise<QueryCacheStorage> | undefined;
  #status: QueryCacheStatus = "idle";
  #error: LunoraError | undefined;
  readonly #statusListeners = new Listeners<[status: QueryCacheStatus, error: LunoraError | undefined]>();
  #pending = new Map<string, Pending>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #firstPendingAt: number | undefined;
  /** Storage operations run one at a time, in call order. */
  #queue: Promise<void> = Promise.resolve();
  #lastTs = 0;
  #closed = false;
  #removePageHide: (() => void) | undefined;

  constructor(openStorage: () => Promise<QueryCacheStorage>, options: QueryCacheOptions & QueryCacheErrorOptions = {}) {
    this.#openStorage = openStorage;
    this.settings = Object.freeze(resolveSettings(options));
    this.#onError =
      options.onError ??
      ((error) => {
        console.warn(`[lunora] query cache: ${error.code}: ${error.message}`);
      });
  }

  /** Where the cache stands (see {@link QueryCacheStatus}). Read synchronously. */
  get status(): QueryCacheStatus {
    return this.#status;
  }

  /** Why the cache is `failed`; `undefined` otherwise. */
  get error(): LunoraError | undefined {
    return this.#error;
  }

  /**
   * Calls `listener` when {@link status} changes, so an app can say "offline
   * reads unavailable" instead of failing silently. Returns a function that
   * removes it.
   *
   * @example
   * ```ts
   * client.queryCache?.onStatusChange((status, error) => {
   *   if (status === "failed") showBanner(`Offline reading is off: ${error?.code}`);
   * });
   * ```
   */
  onStatusChange(listener: (status: QueryCacheStatus, error: LunoraError | undefined) => void): () => void {
    return this.#statusListeners.add(listener);
  }

  /**
   * Binds the cache to a client's identity and starts opening storage. Called
   * by `LunoraClient`'s constructor, so the identity (an async SHA-256) and
   * the storage open overlap with the app's own start-up — and again each
   * time the client learns its identity (`identity`): if the identity could
   * not be resolved before (an `auth()` that failed while offline), the cache
   * opens then instead of staying off for the session.
   */
  attach(resolveIdentity: () => Promise<string>, identity?: string): void {
    this.#resolveIdentity = resolveIdentity;
    if (identity !== undefined) this.#knownIdentity = identity;
    if (this.#ready || this.#closed || this.#status === "failed") return;
    this.#setStatus("opening");
    const ready: Promise<OpenState | undefined> = this.#open(resolveIdentity).then(
      (state) => {
        if (state) this.#setStatus(this.#closed ? "closed" : "ready");
        else if (this.#ready === ready) {
          // No identity yet: the next identity the client learns attaches again.
          this.#ready = undefined;
          this.#setStatus("idle");
        }
        return state;
      },
      (error: unknown) => {
        const coded = this.#report(error, "opening the query cache failed");
        this.#error = coded;
        this.#setStatus("failed");
        return undefined;
      },
    );
    this.#ready = ready;
    this.#listenForPageHide();
  }

  /**
   * The cached entry of a view under the current identity, or `undefined`.
   * Never rejects. A view written in this session but not yet flushed is
   * returned from memory.
   */
  async read(key: string): Promise<CachedView | undefined> {
    const state = await this.#ready;
    if (!state || this.#closed) return undefined;
    const pending = this.#pending.get(key);
    if (pending === null) return undefined;
    if (typeof pending === "object") return viewOf(key, state.identity, pending, Date.now());
    await this.#queue; // a write of this key may be under way
    const record = state.index.get(key);
    if (!record || record.identity !== state.identity) return undefined;
    let json: string | undefined;
    try {
      json = await state.storage.read(key);
    } catch (error) {
      this.#report(error, `reading cached view ${key} failed`);
      return undefined;
    }
    const view = json === undefined ? undefined : parseView(json);
    if (!view || view.key !== key || view.identity !== state.identity) {
      // Unreadable or not ours: never hydrate it, and do not keep it.
      if (json !== undefined) this.remove(key);
      return undefined;
    }
    // Reading is using: move it to the recent end of the LRU order.
    state.index.delete(key);
    state.index.set(key, record);
    this.stats.hydrated++;
    return view;
  }

  /**
   * Notes that a view changed. Its state is read through `snapshot` when the
   * batch is written (return `undefined` to skip it, e.g. mid-reset).
   */
  schedule(key: string, snapshot: () => ViewSnapshot | undefined): void {
    this.#setPending(key, snapshot);
  }

  /**
   * Fixes a scheduled view's state now: its collection is moving to another
   * view (or stopping), so the live snapshot would soon describe other rows.
   */
  settle(key: string): void {
    const pending = this.#pending.get(key);
    if (typeof pending !== "function") return;
    const snapshot = pending();
    if (snapshot) this.#pending.set(key, snapshot);
    else this.#pending.delete(key);
  }

  /** Drops a view's entry (its rows may no longer be readable). */
  remove(key: string): void {
    this.#setPending(key, null);
  }

  /** Writes every pending view now, as one batch. Resolves when storage has it. */
  flush(): Promise<void> {
    this.#disarm();
    if (this.#pending.size === 0) return this.#queue;
    const batch = new Map<string, ViewSnapshot | null>();
    for (const [key, pending] of this.#pending) {
      // A live view with nothing to store (e.g. mid-reset) is skipped; `null` removes.
      const snapshot = typeof pending === "function" ? pending() : pending;
      if (snapshot !== undefined) batch.set(key, snapshot);
    }
    this.#pending = new Map();
    return this.#enqueue(() => this.#write(batch));
  }

  /**
   * Removes every entry (sign-out). Entries are also cleared automatically
   * when the client's identity changes.
   */
  clear(): Promise<void> {
    this.#disarm();
    this.#pending.clear();
    return this.#enqueue(async () => {
      const state = await this.#ready;
      if (state) await wipe(state);
    });
  }

  /** Flushes, then releases storage. The cache cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return this.#queue;
    const flushed = this.flush();
    this.#closed = true;
    this.#removePageHide?.();
    this.#removePageHide = undefined;
    await flushed;
    const state = await this.#ready;
    await this.#queue;
    (state?.storage ?? (await this.#storage?.catch(() => undefined)))?.close();
    this.#setStatus("closed");
    this.#statusListeners.clear();
  }

  // ---------------------------------------------------------------------------

  #setStatus(status: QueryCacheStatus): void {
    if (this.#status === status || this.#status === "closed") return;
    this.#status = status;
    if (status !== "failed") this.#error = undefined;
    this.#statusListeners.emit(status, this.#error);
  }

  /** Opens storage and reads its index; `undefined` when no identity is known yet (storage stays open for the next try). */
  async #open(resolveIdentity: () => Promise<string>): Promise<OpenState | undefined> {
    this.#storage ??= this.#openStorage();
    const storagePromise = this.#storage;
    const identityPromise = resolveIdentity().catch(() => this.#knownIdentity);
    const [identity, storage] = await Promise.all([identityPromise, storagePromise]);
    if (identity === undefined) return undefined;
    let records = await storage.records();
    if (records.some((record) => record.identity !== identity)) {
      // Another identity's rows are on this device: none of them may show,
      // and keeping them would keep them one token refresh away from showing.
      await storage.clear();
      this.stats.identityClears++;
      records = [];
    }
    const indexed = indexOf(records);
    this.#lastTs = records.at(-1)?.ts ?? 0;
    return { storage, identity, ...indexed };
  }

  async #write(batch: Map<string, ViewSnapshot | null>): Promise<void> {
    const state = await this.#ready;
    if (!state || batch.size === 0) return;
    let identity: string;
    try {
      identity = await this.#resolveIdentity!();
    } catch {
      return; // no usable token (signed out mid-flight): nothing is stamped with a guess
    }
    if (identity !== state.identity) {
      // The token changed hands: what is stored belongs to the previous
      // identity, and this batch may hold rows read under it.
      await wipe(state);
      state.identity = identity;
      this.stats.identityClears++;
      return;
    }

    const { maxBytes, maxEntries } = this.settings;
    const ts = (this.#lastTs = Math.max(Date.now(), this.#lastTs + 1));
    const put = new Map<string, { record: CachedViewRecord; json: string }>();
    const remove = new Set<string>();
    for (const [key, snapshot] of batch) {
      const old = state.index.get(key);
      if (old) {
        state.index.delete(key);
        state.bytes -= old.bytes;
      }
      if (snapshot === null) {
        if (old) remove.add(key);
        continue;
      }
      const json = JSON.stringify(viewOf(key, identity, snapshot, ts));
      const record: CachedViewRecord = { key, identity, ts, bytes: utf8Length(json) };
      if (record.bytes > maxBytes) {
        // Larger than the whole cache: not cached (the collection still works online).
        if (old) remove.add(key);
        continue;
      }
      state.index.set(key, record);
      state.bytes += record.bytes;
      put.set(key, { record, json });
    }
    let evicted = 0;
    for (const [key, record] of state.index) {
      if (state.index.size <= maxEntries && state.bytes <= maxBytes) break;
      state.index.delete(key);
      state.bytes -= record.bytes;
      if (!put.delete(key)) remove.add(key);
      evicted++;
    }
    if (put.size === 0 && remove.size === 0) return;
    try {
      await state.storage.write([...put.values()], [...remove]);
    } catch (error) {
      // The index no longer matches storage; re-read it so the caps stay true.
      this.#report(error, "writing the query cache failed");
      try {
        Object.assign(state, indexOf(await state.storage.records()));
      } catch {
        state.index.clear();
        state.bytes = 0;
      }
      return;
    }
    this.stats.flushes++;
    this.stats.written += put.size;
    this.stats.evicted += evicted;
  }

  /**
   * Queues `key`'s write for the next batch (nothing before the cache is
   * attached, or once closed): debounced, but written at most `maxWaitMs`
   * after the first pending write.
   */
  #setPending(key: string, pending: Pending): void {
    if (this.#closed || !this.#ready) return;
    this.#pending.set(key, pending);
    const now = Date.now();
    this.#firstPendingAt ??= now;
    const { debounceMs, maxWaitMs } = this.settings;
    const delay = Math.max(0, Math.min(debounceMs, this.#firstPendingAt + maxWaitMs - now));
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, delay);
    unrefTimer(this.#timer);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#firstPendingAt = undefined;
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task).catch((error: unknown) => {
      this.#report(error, "query cache operation failed");
    });
    this.#queue = run;
    return run;
  }

  /** Browsers may end a page without running timers again: write what is pending when it hides. */
  #listenForPageHide(): void {
    if (this.#removePageHide) return; // attach() runs again after a failed identity lookup
    const target = globalThis as { addEventListener?: EventTarget["addEventListener"]; removeEventListener?: EventTarget["removeEventListener"]; document?: { visibilityState?: string } };
    if (typeof target.addEventListener !== "function" || target.document === undefined) return;
    const onHide = () => {
      if (target.document?.visibilityState !== "visible") void this.flush();
    };
    target.addEventListener("pagehide", onHide);
    target.addEventListener("visibilitychange", onHide);
    this.#removePageHide = () => {
      target.removeEventListener?.("pagehide", onHide);
      target.removeEventListener?.("visibilitychange", onHide);
    };
  }

  #report(error: unknown, context: string): LunoraError {
    const coded =
      error instanceof LunoraError
        ? error
        : new LunoraError(isQuotaError(error) ? "QUOTA_EXCEEDED" : "STORAGE_FAILURE", `${context}: ${describe(error)}`);
    try {
      this.#onError(coded);
    } catch (thrown) {
      reportListenerError(thrown);
    }
    return coded;
  }
}

/** A view's stored form. */
function viewOf(key: string, identity: string, { cursor, rows, resolvedWhere }: ViewSnapshot, ts: number): CachedView {
  const view: CachedView = { key, identity, serverCursor: cursor.seq, epoch: cursor.epoch, ts, rows };
  if (resolvedWhere !== undefined) view.resolvedWhere = resolvedWhere;
  return view;
}

/** The records in LRU order (least recently written first, sorting `records` in place) and their total size. */
function indexOf(records: CachedViewRecord[]): Pick<OpenState, "index" | "bytes"> {
  records.sort((a, b) => a.ts - b.ts);
  return { index: new Map(records.map((record) => [record.key, record])), bytes: records.reduce((sum, record) => sum + record.bytes, 0) };
}

/** Removes every stored entry. */
async function wipe(state: OpenState): Promise<void> {
  await state.storage.clear();
  state.index.clear();
  state.bytes = 0;
}

function resolveSettings(options: QueryCacheOptions): QueryCacheSettings {
  const settings = { ...DEFAULT_QUERY_CACHE_LIMITS };
  for (const name of Object.keys(DEFAULT_QUERY_CACHE_LIMITS) as Array<keyof QueryCacheSettings>) {
    const value = options[name];
    if (value === undefined) continue;
    const min = name === "maxEntries" || name === "maxBytes" ? 1 : 0;
    if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
      throw new LunoraError("INVALID_ARGS", `query cache: \`${name}\` must be a finite number ≥ ${min}`);
    }
    settings[name] = value;
  }
  return settings;
}

/** Parses a stored entry, or `undefined` when it is not one (a corrupted or foreign value). */
function parseView(json: string): CachedView | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  const view = value as Partial<CachedView>;
  const ok =
    typeof view.key === "string" &&
    typeof view.identity === "string" &&
    Number.isInteger(view.serverCursor) &&
    (view.serverCursor as number) >= 0 &&
    typeof view.epoch === "string" &&
    view.epoch.length > 0 &&
    typeof view.ts === "number" &&
    (view.resolvedWhere === undefined ||
      typeof view.resolvedWhere === "boolean" ||
      (isObject(view.resolvedWhere) && !Array.isArray(view.resolvedWhere))) &&
    Array.isArray(view.rows) &&
    view.rows.every(
      (entry) =>
        Array.isArray(entry) &&
        (typeof entry[0] === "string" || typeof entry[0] === "number") &&
        isObject(entry[1]),
    );
  return ok ? (view as CachedView) : undefined;
}

function isObject(value: unknown): value is object {
  return typeof value === "object" && value !== null;
}

function isQuotaError(error: unknown): boolean {
  return isObject(error) && (error as { name?: unknown }).name === "QuotaExceededError";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
