/**
 * The IndexedDB plumbing the query cache and the write outbox share: both
 * keep their own database, over the raw API of a factory that may be passed
 * in. Not `idb`: its `wrap` recognises requests with `instanceof IDBRequest`
 * against the *global* classes, so with a factory passed in and no IndexedDB
 * globals (Node tests giving each simulated device its own `new IDBFactory()`)
 * every open failed with `IDBRequest is not defined`.
 */
import { LunoraError } from "../protocol/index.js";

/** `factory`, else the global `indexedDB`; `STORAGE_FAILURE` when there is neither (`hint` says what to do instead). */
export function indexedDbFactory(factory: IDBFactory | undefined, hint: string): IDBFactory {
  const found = factory ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!found) throw new LunoraError("STORAGE_FAILURE", `IndexedDB is not available here; ${hint}`);
  return found;
}

/**
 * Opens `name` at `version`, creating stores in `upgrade`. The connection
 * closes itself when another tab wants to upgrade the schema, and `onGone`
 * runs then or when the browser closed it (storage cleared, disk error): the
 * caller opens again on next use. Rejects with the original error (a
 * `SecurityError` in a sandboxed frame, a `QuotaExceededError`…).
 */
export function openDatabase(factory: IDBFactory, name: string, version: number, upgrade: (db: IDBDatabase) => void, onGone: () => void): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    // A synchronous throw of open() rejects through the executor.
    const request = factory.open(name, version);
    request.onupgradeneeded = () => upgrade(request.result);
    request.onsuccess = () => {
      const db = request.result;
      db.onversionchange = () => {
        db.close();
        onGone();
      };
      db.onclose = onGone;
      resolve(db);
    };
    request.onerror = () => reject(request.error);
  });
}

/** The result of one request, on its `success`. */
export function requestResult<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Resolves on the transaction's `complete` (the data is durable), rejects on error or abort. */
export function transactionDone(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    // At `error` the transaction's own `error` is not set yet: the failed request holds it.
    tx.onerror = (event) => reject((event.target as IDBRequest | null)?.error ?? tx.error ?? new DOMException("IndexedDB request failed", "UnknownError"));
    tx.onabort = () => reject(tx.error ?? new DOMException("IndexedDB transaction aborted", "AbortError"));
  });
}
