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
  const changes = new ChangeFeed(`lunora-outbox:${name}`);
  return {
    kind: "indexeddb",
    storage: new IndexedDbStorage(name, options.indexedDB, () => changes.announce()),
    onChange: (listener) => changes.subscribe(listener),
  };
}

/**
 * "Entries changed" notices: to listeners in this realm directly, and to
 * other tabs (and workers) of the origin over a `BroadcastChannel`, which
 * does not deliver a message to the object that posted it. The channel is
 * opened only while someone listens and is `unref`'d under Node, so it
 * never keeps a process alive.
 */
class ChangeFeed {
  readonly #name: string;
  readonly #listeners = new Listeners<[]>();
  #channel: BroadcastChannel | undefined;

  constructor(name: string) {
    this.#name = name;
  }

  subscribe(listener: () => void): () => void {
    const remove = this.#listeners.add(listener);
    this.#open();
    return () => {
      remove();
      if (this.#listeners.size === 0) {
        this.#channel?.close();
        this.#channel = undefined;
      }
    };
  }

  announce(): void {
    this.#listeners.emit();
    try {
      (this.#open() ?? transientChannel(this.#name))?.postMessage("changed");
    } catch {
      // closed concurrently: other tabs re-count on their next own change
    }
  }

  #open(): BroadcastChannel | undefined {
    if (this.#channel || this.#listeners.size === 0 || typeof BroadcastChannel === "undefined") return this.#channel;
    const channel = new BroadcastChannel(this.#name);
    (channel as { unref?: () => void }).unref?.();
    channel.onmessage = () => this.#listeners.emit();
    this.#channel = channel;
    return channel;
  }
}

/** A channel for one post when nobody in this realm listens (closed right after). */
function transientChannel(name: string): { postMessage(message: unknown): void } | undefined {
  if (typeof BroadcastChannel === "undefined") return undefined;
  return {
    postMessage(message) {
      const channel = new BroadcastChannel(name);
      channel.postMessage(message);
      channel.close();
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

class IndexedDbStorage implements StorageAdapter {
  readonly #name: string;
  readonly #factory: IDBFactory | undefined;
  readonly #changed: () => void;
  #db: Promise<IDBDatabase> | undefined;

  constructor(name: string, factory: IDBFactory | undefined, changed: () => void) {
    this.#name = name;
    this.#factory = factory;
    this.#changed = changed;
  }

  get(key: string): Promise<string | null> {
    return this.#run("readonly", (store) => store.get(key)).then((value) => (typeof value === "string" ? value : null));
  }

  async set(key: string, value: string): Promise<void> {
    await this.#run("readwrite", (store) => store.put(value, key));
    this.#changed();
  }

  async delete(key: string): Promise<void> {
    await this.#run("readwrite", (store) => store.delete(key));
    this.#changed();
  }

  async keys(): Promise<string[]> {
    const keys = await this.#run("readonly", (store) => store.getAllKeys());
    return (keys as IDBValidKey[]).filter((key): key is string => typeof key === "string");
  }

  async clear(): Promise<void> {
    await this.#run("readwrite", (store) => store.clear());
    this.#changed();
  }

  #open(): Promise<IDBDatabase> {
    if (this.#db) return this.#db;
    const opening = (async () => {
      const factory = indexedDbFactory(this.#factory, "pass `indexedDB` or use createInMemoryPersistence()");
      const upgrade = (db: IDBDatabase) => {
        if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE);
      };
      // Another tab upgrading the schema, or the browser closing it: reopen on next use.
      return openDatabase(factory, this.#name, 1, upgrade, () => (this.#db = undefined));
    })();
    // A failed open is retried on the next call (private mode may be left, quota freed).
    this.#db = opening.catch((error: unknown) => {
      this.#db = undefined;
      throw error;
    });
    return this.#db;
  }

  /**
   * Runs one request in its own transaction; resolves with its result once
   * the transaction completed (the write is durable), rejects with the
   * original `DOMException` otherwise.
   */
  async #run<T>(mode: IDBTransactionMode, request: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const transaction = (await this.#open()).transaction(STORE, mode);
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
  }
}

/** The `onStorageFailure` code of a storage error. */
export function storageFailureCode(error: unknown): "QUOTA_EXCEEDED" | "STORAGE_FAILURE" {
  const name = (error as { name?: unknown } | null)?.name;
  const message = (error as { message?: unknown } | null)?.message;
  if (name === "QuotaExceededError" || (typeof message === "string" && /quota/i.test(message))) return "QUOTA_EXCEEDED";
  return "STORAGE_FAILURE";
}
