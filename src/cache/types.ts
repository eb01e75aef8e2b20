import type { Cursor, Row, RowKey, Where } from "../protocol/index.js";

/**
 * What is persisted for one collection view (a list or a shape with its args,
 * in one room of one party): the rows the room sent — never optimistic
 * overlays — and the cursor they correspond to.
 */
export interface CachedView {
  /** The view's cache key (see `viewCacheKey`). */
  key: string;
  /** Fingerprint of the token the rows were read with; an entry only hydrates under the same identity. */
  identity: string;
  /** Where the rows stand in the room's log: the resume point. */
  serverCursor: number;
  epoch: string;
  /** `Date.now()` of the write; the LRU order (oldest evicted first). */
  ts: number;
  /** `[wire key, row]` pairs: the wire key is what the room's later `del` ops name. */
  rows: Array<[RowKey, Row]>;
  /**
   * For a limited subset (on-demand sync): the predicate the room resolved
   * its cut to. The subset resumes with it, so the cursor and the rows keep
   * naming the same set.
   */
  resolvedWhere?: Where;
}

/** The bookkeeping of one stored entry, kept apart from its rows so the LRU never loads them. */
export interface CachedViewRecord {
  key: string;
  identity: string;
  ts: number;
  /** UTF-8 size of the stored JSON. */
  bytes: number;
}

/**
 * Where a query cache keeps its entries. Two implementations ship:
 * IndexedDB and memory. Every method may reject; the cache treats a failure
 * as a miss (reads) or a dropped batch (writes), never as a crash.
 */
export interface QueryCacheStorage {
  /** Every entry's record (no rows). */
  records(): Promise<CachedViewRecord[]>;
  /** One entry's JSON (a serialized {@link CachedView}), or `undefined`. */
  read(key: string): Promise<string | undefined>;
  /** Stores `put` and removes `remove` atomically (one IndexedDB transaction). */
  write(put: Array<{ record: CachedViewRecord; json: string }>, remove: string[]): Promise<void>;
  /** Removes every entry. */
  clear(): Promise<void>;
  close(): void;
}

/** Options of `createIndexedDbQueryCache` and `createInMemoryQueryCache`. */
export interface QueryCacheOptions {
  /** Most entries (collection views) kept; the least recently written go first. Default {@link DEFAULT_QUERY_CACHE_LIMITS}. */
  maxEntries?: number;
  /** Most bytes (UTF-8 JSON) kept over all entries. A single view larger than this is not cached. */
  maxBytes?: number;
  /** Quiet time after a poke before its view is written (a burst of pokes is one write). */
  debounceMs?: number;
  /** Longest a view waits to be written while pokes keep arriving. */
  maxWaitMs?: number;
  /**
   * How long a collection waits for its cached entry (identity, storage
   * open, read) before it subscribes without it. Bounded so a slow or
   * blocked IndexedDB never keeps an app from syncing.
   */
  hydrateTimeoutMs?: number;
}

/** The settings a cache runs with (its options with defaults applied). */
export type QueryCacheSettings = Required<QueryCacheOptions>;

/**
 * Defaults: 200 views and 50 MB cover a session's worth of channels without
 * nearing browser storage quotas; a 250 ms debounce (2 s at most) turns a
 * burst of pokes into one write; 3 s for hydration is far above a healthy
 * IndexedDB read and short enough that a blocked database only delays sync.
 */
export const DEFAULT_QUERY_CACHE_LIMITS: Readonly<QueryCacheSettings> = Object.freeze({
  maxEntries: 200,
  maxBytes: 50 * 1024 * 1024,
  debounceMs: 250,
  maxWaitMs: 2_000,
  hydrateTimeoutMs: 3_000,
});

/** Counters for observability and tests. */
export interface QueryCacheStats {
  /** Batches handed to storage (IndexedDB: one transaction each). */
  flushes: number;
  /** Entries written. */
  written: number;
  /** Entries removed to stay under the caps. */
  evicted: number;
  /** Entries read back into a collection. */
  hydrated: number;
  /** Times the whole cache was cleared because the identity differed. */
  identityClears: number;
}

/** A view's state as handed to the cache at flush time. */
export interface ViewSnapshot {
  cursor: Cursor;
  rows: Array<[RowKey, Row]>;
  /** See {@link CachedView.resolvedWhere}. */
  resolvedWhere?: Where;
}
