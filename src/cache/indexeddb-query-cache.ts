import { indexedDbFactory, openDatabase, requestResult, transactionDone } from "./indexeddb.js";
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

/** Options of {@link createIndexedDbQueryCache}. */
export interface IndexedDbQueryCacheOptions extends QueryCacheOptions, QueryCacheErrorOptions {
  /** IndexedDB database name. Default {@link DEFAULT_QUERY_CACHE_DATABASE}. */
  databaseName?: string;
  /**
   * The IndexedDB factory. Default: the global `indexedDB`. A factory alone
   * is enough — no IndexedDB globals are needed — so tests can give each
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

/** Storage over the raw IndexedDB API of one factory (see ./indexeddb.ts for why not `idb`). */
async function openIndexedDbStorage(name: string, factory?: IDBFactory): Promise<QueryCacheStorage> {
  const indexedDb = indexedDbFactory(factory, "pass `indexedDB` or use createInMemoryQueryCache()");
  let current: Promise<IDBDatabase> | undefined;
  const upgrade = (db: IDBDatabase) => {
    if (!db.objectStoreNames.contains(RECORDS)) db.createObjectStore(RECORDS, { keyPath: "key" });
    if (!db.objectStoreNames.contains(VIEWS)) db.createObjectStore(VIEWS, { keyPath: "key" });
  };
  const database = (): Promise<IDBDatabase> =>
    // Another tab upgrading, or the browser closing it: reopen on next use.
    (current ??= openDatabase(indexedDb, name, DATABASE_VERSION, upgrade, () => (current = undefined)).catch((error: unknown) => {
      current = undefined;
      throw error;
    }));
  await database();

  return {
    records: async () => (await requestResult((await database()).transaction(RECORDS, "readonly").objectStore(RECORDS).getAll())) as CachedViewRecord[],
    read: async (key) => ((await requestResult((await database()).transaction(VIEWS, "readonly").objectStore(VIEWS).get(key))) as { json: string } | undefined)?.json,
    write: async (put, remove) => {
      const tx = (await database()).transaction([RECORDS, VIEWS], "readwrite");
      const done = transactionDone(tx);
      const records = tx.objectStore(RECORDS);
      const views = tx.objectStore(VIEWS);
      for (const key of remove) {
        records.delete(key);
        views.delete(key);
      }
      for (const { record, json } of put) {
        records.put(record);
        views.put({ key: record.key, json });
      }
      // A failing request aborts the transaction: its error arrives here.
      await done;
    },
    clear: async () => {
      const tx = (await database()).transaction([RECORDS, VIEWS], "readwrite");
      const done = transactionDone(tx);
      tx.objectStore(RECORDS).clear();
      tx.objectStore(VIEWS).clear();
      await done;
    },
    close: () => {
      void current?.then((db) => db.close(), () => undefined);
      current = undefined;
    },
  };
}
