import { openDB, wrap, type DBSchema, type IDBPDatabase } from "idb";
import { LunoraError } from "../protocol/index.js";
import { QueryCache, type QueryCacheErrorOptions } from "./query-cache.js";
import type { CachedViewRecord, QueryCacheOptions, QueryCacheStorage } from "./types.js";

/**
 * The default database. It is the query cache's own (the outbox keeps its
 * queue elsewhere): IndexedDB creates object stores only in a version
 * upgrade, so two modules sharing one database would have to agree on every
 * version bump, and a tab running the older code would block the newer one.
 */
export const DEFAULT_QUERY_CACHE_DATABASE = "lunora-query-cache";
const DATABASE_VERSION = 1;
/** Entry records (key, identity, ts, bytes): read whole at start for the LRU, without any rows. */
const RECORDS = "viewRecords";
/** Entry bodies (one JSON string per view: one structured-clone value instead of thousands of rows). */
const VIEWS = "views";

interface QueryCacheSchema extends DBSchema {
  [RECORDS]: { key: string; value: CachedViewRecord };
  [VIEWS]: { key: string; value: { key: string; json: string } };
}

/** Options of {@link createIndexedDbQueryCache}. */
export interface IndexedDbQueryCacheOptions extends QueryCacheOptions, QueryCacheErrorOptions {
  /** IndexedDB database name. Default {@link DEFAULT_QUERY_CACHE_DATABASE}. */
  databaseName?: string;
  /**
   * The IndexedDB factory. Default: the global `indexedDB`. Tests give each
   * simulated device its own (`new IDBFactory()` from fake-indexeddb).
   */
  indexedDB?: IDBFactory;
}

/**
 * A query cache in IndexedDB: collections render their last-seen rows on
 * boot, before any socket opens, then resume from the stored cursor.
 *
 * Defaults: {@link DEFAULT_QUERY_CACHE_LIMITS} (200 views, 50 MB, writes
 * debounced 250 ms, at most 2 s late). Each flush is one IndexedDB transaction.
 *
 * @example
 * ```ts
 * import { LunoraClient, createIndexedDbQueryCache } from "@lunora/db";
 *
 * const client = new LunoraClient({
 *   host: "my-app.workers.dev",
 *   party: "chat-room",
 *   auth: () => session.token,
 *   queryCache: createIndexedDbQueryCache({ maxEntries: 100 }),
 * });
 * ```
 */
export function createIndexedDbQueryCache(options: IndexedDbQueryCacheOptions = {}): QueryCache {
  const name = options.databaseName ?? DEFAULT_QUERY_CACHE_DATABASE;
  return new QueryCache(() => openIndexedDbStorage(name, options.indexedDB), options);
}

type OpenCallbacks = { upgrade(db: IDBPDatabase<QueryCacheSchema>): void; blocking(): void; terminated(): void };

/** `openDB` of idb, on a given factory instead of the global one. */
function openOn(factory: IDBFactory, name: string, callbacks: OpenCallbacks): Promise<IDBPDatabase<QueryCacheSchema>> {
  const request = factory.open(name, DATABASE_VERSION);
  request.addEventListener("upgradeneeded", () => callbacks.upgrade(wrap(request.result) as unknown as IDBPDatabase<QueryCacheSchema>));
  return (wrap(request) as unknown as Promise<IDBPDatabase<QueryCacheSchema>>).then((db) => {
    db.addEventListener("versionchange", () => callbacks.blocking());
    db.addEventListener("close", () => callbacks.terminated());
    return db;
  });
}

async function openIndexedDbStorage(name: string, factory?: IDBFactory): Promise<QueryCacheStorage> {
  if (factory === undefined && typeof indexedDB === "undefined") {
    throw new LunoraError("STORAGE_FAILURE", "IndexedDB is not available here; use createInMemoryQueryCache()");
  }
  let current: Promise<IDBPDatabase<QueryCacheSchema>> | undefined;
  const database = (): Promise<IDBPDatabase<QueryCacheSchema>> =>
    (current ??= (factory ? (callbacks: OpenCallbacks) => openOn(factory, name, callbacks) : (callbacks: OpenCallbacks) => openDB<QueryCacheSchema>(name, DATABASE_VERSION, callbacks))({
      upgrade(db) {
        if (!db.objectStoreNames.contains(RECORDS)) db.createObjectStore(RECORDS, { keyPath: "key" });
        if (!db.objectStoreNames.contains(VIEWS)) db.createObjectStore(VIEWS, { keyPath: "key" });
      },
      // A newer version in another tab wants to upgrade: step aside, reopen on next use.
      blocking() {
        void current?.then((db) => db.close());
        current = undefined;
      },
      // The browser closed it (storage cleared, disk error): reopen on next use.
      terminated() {
        current = undefined;
      },
    }).catch((error: unknown) => {
      current = undefined;
      throw error;
    }));
  await database();

  return {
    records: async () => (await database()).getAll(RECORDS),
    read: async (key) => (await (await database()).get(VIEWS, key))?.json,
    write: async (put, remove) => {
      const tx = (await database()).transaction([RECORDS, VIEWS], "readwrite");
      const records = tx.objectStore(RECORDS);
      const views = tx.objectStore(VIEWS);
      const requests: Array<Promise<unknown>> = [];
      for (const key of remove) requests.push(records.delete(key), views.delete(key));
      for (const { record, json } of put) requests.push(records.put(record), views.put({ key: record.key, json }));
      await Promise.all([...requests, tx.done]);
    },
    clear: async () => {
      const tx = (await database()).transaction([RECORDS, VIEWS], "readwrite");
      await Promise.all([tx.objectStore(RECORDS).clear(), tx.objectStore(VIEWS).clear(), tx.done]);
    },
    close: () => {
      void current?.then((db) => db.close());
      current = undefined;
    },
  };
}
