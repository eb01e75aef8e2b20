/** Offline reads: a persisted query cache that hydrates collections on boot. */
export { QueryCache } from "./query-cache.js";
export type { QueryCacheErrorOptions, QueryCacheStatus } from "./query-cache.js";
export { createIndexedDbQueryCache, DEFAULT_QUERY_CACHE_DATABASE } from "./indexeddb-query-cache.js";
export type { IndexedDbQueryCacheOptions } from "./indexeddb-query-cache.js";
export { createInMemoryQueryCache, createInMemoryQueryCacheStore } from "./in-memory-query-cache.js";
export type { InMemoryQueryCacheOptions, InMemoryQueryCacheStore } from "./in-memory-query-cache.js";
export { viewCacheKey } from "./view-key.js";
export { DEFAULT_QUERY_CACHE_LIMITS } from "./types.js";
export type {
  CachedView,
  CachedViewRecord,
  QueryCacheOptions,
  QueryCacheSettings,
  QueryCacheStats,
  QueryCacheStorage,
  ViewSnapshot,
} from "./types.js";
