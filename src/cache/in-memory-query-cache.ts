import { QueryCache, type QueryCacheErrorOptions } from "./query-cache.js";
import type { CachedViewRecord, QueryCacheOptions, QueryCacheStorage } from "./types.js";

/** Options of {@link createInMemoryQueryCache}. */
export interface InMemoryQueryCacheOptions extends QueryCacheOptions, QueryCacheErrorOptions {
  /**
   * Where entries live. Pass the same store to a second cache to model a
   * reload in tests (SSR and tests; it lasts as long as the process).
   */
  store?: InMemoryQueryCacheStore;
}

/** The backing maps of an in-memory query cache. */
export interface InMemoryQueryCacheStore {
  records: Map<string, CachedViewRecord>;
  views: Map<string, string>;
}

/** A fresh, empty {@link InMemoryQueryCacheStore}. */
export function createInMemoryQueryCacheStore(): InMemoryQueryCacheStore {
  return { records: new Map(), views: new Map() };
}

/**
 * A query cache with the same contract as {@link createIndexedDbQueryCache}
 * (identity gating, debounce, LRU caps) that keeps entries in memory: for
 * tests, SSR and runtimes without IndexedDB.
 *
 * @example
 * ```ts
 * import { LunoraClient, createInMemoryQueryCache } from "@lunora/db";
 *
 * const client = new LunoraClient({ host, party: "chat-room", queryCache: createInMemoryQueryCache() });
 * ```
 */
export function createInMemoryQueryCache(options: InMemoryQueryCacheOptions = {}): QueryCache {
  const store = options.store ?? createInMemoryQueryCacheStore();
  const storage: QueryCacheStorage = {
    records: async () => [...store.records.values()].map((record) => ({ ...record })),
    read: async (key) => store.views.get(key),
    write: async (put, remove) => {
      for (const key of remove) {
        store.records.delete(key);
        store.views.delete(key);
      }
      for (const { record, json } of put) {
        store.records.set(record.key, { ...record });
        store.views.set(record.key, json);
      }
    },
    clear: async () => {
      store.records.clear();
      store.views.clear();
    },
    close: () => undefined,
  };
  return new QueryCache(async () => storage, options);
}
