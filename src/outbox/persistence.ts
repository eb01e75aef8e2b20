import type { StorageAdapter } from "@tanstack/offline-transactions";
import { indexedDbFactory, openDatabase, transactionDone } from "../cache/indexeddb.js";
import { Listeners } from "../client/listeners.js";

/**
 * Where the durable write outbox keeps its entries: the queued writes
 * (`@tanstack/offline-transactions` records under `tx:` keys) and, per
 * identity, the writer record (stable `clientId` and the last `clientSeq`
 * handed out per room).
 *
 * Pass one to `new LunoraClient({ persistence })` or to `defineCollections` /
 * `bindMutators` options. A "reload" that must replay the queue is a new
 * client over the same persistence (same IndexedDB database).
 */
export interface OutboxPersistence {
  /** `indexeddb` (survives reloads) or `memory` (survives only as long as this object). */
  readonly kind: "indexeddb" | "memory";
  /** The key-value store, in the shape `@tanstack/offline-transactions` expects. */
  readonly storage: StorageAdapter;
  /**
   * Calls `listener` after entries changed, whoever changed them: another
   * client over the same object, or another tab of the origin over the same
   * IndexedDB database. Every tab counts what is queued from storage, so each
   * one hears of writes stored or delivered by the others. Optional: without
   * it a client only sees its own changes.
   */
  onChange?(listener: () => void): () => void;
}

/** Options of {@link createIndexedDbPersistence}. */
export interface IndexedDbPersistenceOptions {
  /** Database name (default `"lunora-outbox"`). One database per app origin is enough. */
  databaseName?: string;
  /**
   * The `IDBFactory` to use; defaults to the global `indexedDB`. Tests pass
   * `new IDBFactory()` from `fake-indexeddb` to get an isolated database per test.
   */
  indexedDB?: IDBFactory;
}

const STORE = "entries";

/**
 * The default outbox storage: one IndexedDB object store of string values.
 *
 * It is Lunora's own small adapter rather than the `IndexedDBAdapter` of
 * `@tanstack/offline-transactions`, for two platform reasons: that adapter
 * always reads the global `indexedDB` (no isolated factory for tests or
 * workers), and it turns read failures into "no entry" — a failing read would
 * then look like an empty outbox and a fresh writer, which could hand out a
 * `clientSeq` twice. Here every failure rejects with the original
 * `DOMException` (`QuotaExceededError`, `InvalidStateError`…) so the outbox
 * can report it through `onStorageFailure`. A write resolves on the IndexedDB
 * transaction's `complete`, not on the request's `success`.
 *
 * @example
 * ```ts
 * import { LunoraClient, createIndexedDbPersistence } from "@lunora/db";
 *
 * const client = new LunoraClient({ host, party: "chat", persistence: createIndexedDbPersistence() });
 * ```
 */
export function createIndexedDbPersistence(options: IndexedDbPersistenceOptions = {}): OutboxPersistence {
  const name = options.databaseName ?? "lunora-outbox";
  // "Entries changed" notices: to listeners in this realm directly, and to
  // other tabs (and workers) of the origin over a `BroadcastChannel`, which
  // does not deliver a message to the object that posted it. The channel is
  // opened only while someone listens and is `unref`'d under Node, so it
  // never keeps a process alive.
  const channelName = `lunora-outbox:${name}`;
  const listeners = new Listeners<[]>();
  const hasChannels = typeof BroadcastChannel !== "undefined";
  let channel: BroadcastChannel | undefined;
  const announce = () => {
    listeners.emit();
    if (!hasChannels) return;
    try {
      // Nobody in this realm listens: a channel for this one post.
      const poster = channel ?? new BroadcastChannel(channelName);
      poster.postMessage("changed");
      if (poster !== channel) poster.close();
    } catch {
      // closed concurrently: other tabs re-count on their next own change
    }
  };
  const storage = indexedDbStorage(name, options.indexedDB, announce);
  // Two persistences over one database share an election scope (see storageScope).
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (factory) scopes.set(storage, `${objectId(factory)}:${name}`);
  return {
    kind: "indexeddb",
    storage,
    onChange: (listener) => {
      const remove = listeners.add(listener);
      if (!channel && hasChannels) {
        channel = new BroadcastChannel(channelName);
        (channel as { unref?: () => void }).unref?.();
        channel.onmessage = () => listeners.emit();
      }
      return () => {
        remove();
        if (listeners.size === 0) {
          channel?.close();
          channel = undefined;
        }
      };
    },
  };
}

/**
 * An outbox kept in memory: nothing survives the process, but the object can
 * be handed to a second client in the same process (what a test calls a
 * reload). For environments without IndexedDB (React Native, Node scripts),
 * or apps that do not want offline writes to outlive the page.
 *
 * @example
 * ```ts
 * const persistence = createInMemoryPersistence();
 * const db = defineCollections(client, defs, { persistence });
 * ```
 */
export function createInMemoryPersistence(): OutboxPersistence {
  const entries = new Map<string, string>();
  const listeners = new Listeners<[]>();
  const changed = () => listeners.emit();
  return {
    kind: "memory",
    storage: {
      get: async (key) => entries.get(key) ?? null,
      set: async (key, value) => {
        entries.set(key, value);
        changed();
      },
      delete: async (key) => {
        entries.delete(key);
        changed();
      },
      keys: async () => [...entries.keys()],
      clear: async () => {
        entries.clear();
        changed();
      },
    },
    onChange: (listener) => listeners.add(listener),
  };
}

const scopes = new WeakMap<object, string>();
const ids = new WeakMap<object, number>();
let nextId = 0;

function objectId(object: object): number {
  let id = ids.get(object);
  if (id === undefined) ids.set(object, (id = ++nextId));
  return id;
}

/**
 * Names what `storage` stores into, for the outbox's in-process election:
 * storages over the same IndexedDB database (same factory and name) have
 * the same scope, any other storage object its own.
 */
export function storageScope(storage: StorageAdapter): string {
  return scopes.get(storage) ?? `storage ${objectId(storage)}`;
}

/** The IndexedDB store behind {@link createIndexedDbPersistence}; `changed` runs after each change. */
function indexedDbStorage(name: string, factory: IDBFactory | undefined, changed: () => void): StorageAdapter {
  let db: Promise<IDBDatabase> | undefined;
  const open = (): Promise<IDBDatabase> =>
    // A failed open is retried on the next call (private mode may be left, quota freed).
    (db ??= (async () => {
      const upgrade = (database: IDBDatabase) => {
        if (!database.objectStoreNames.contains(STORE)) database.createObjectStore(STORE);
      };
      // Another tab upgrading the schema, or the browser closing it: reopen on next use.
      return openDatabase(indexedDbFactory(factory, "pass `indexedDB` or use createInMemoryPersistence()"), name, 1, upgrade, () => (db = undefined));
    })().catch((error: unknown) => {
      db = undefined;
      throw error;
    }));

  /**
   * Runs one request in its own transaction; resolves with its result once
   * the transaction completed (the write is durable), rejects with the
   * original `DOMException` otherwise.
   */
  const run = async <T>(mode: IDBTransactionMode, request: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> => {
    const transaction = (await open()).transaction(STORE, mode);
    const done = transactionDone(transaction);
    let req: IDBRequest<T>;
    try {
      req = request(transaction.objectStore(STORE));
    } catch (error) {
      // Some engines throw synchronously (QuotaExceededError, InvalidStateError).
      done.catch(() => undefined);
      try {
        transaction.abort();
      } catch {
        // already finished
      }
      throw error;
    }
    await done;
    return req.result;
  };
  const change = async (request: (store: IDBObjectStore) => IDBRequest) => {
    await run("readwrite", request);
    changed();
  };

  return {
    get: (key) => run("readonly", (store) => store.get(key)).then((value) => (typeof value === "string" ? value : null)),
    set: (key, value) => change((store) => store.put(value, key)),
    delete: (key) => change((store) => store.delete(key)),
    keys: async () => (await run("readonly", (store) => store.getAllKeys())).filter((key): key is string => typeof key === "string"),
    clear: () => change((store) => store.clear()),
  };
}

/** The `onStorageFailure` code of a storage error. */
export function storageFailureCode(error: unknown): "QUOTA_EXCEEDED" | "STORAGE_FAILURE" {
  const name = (error as { name?: unknown } | null)?.name;
  const message = (error as { message?: unknown } | null)?.message;
  if (name === "QuotaExceededError" || (typeof message === "string" && /quota/i.test(message))) return "QUOTA_EXCEEDED";
  return "STORAGE_FAILURE";
}
