/**
 * What a tab's outbox reports (`onWriteRejected`, `onStorageFailure`), each
 * with the `lunora:tab-write:` records IndexedDB held at that moment — to
 * check a record is deleted BEFORE its write is reported (docs/writes.md,
 * "Reject"): reported first, a reload before the delete committed finds the
 * record again and reports the write twice.
 */
import type { Page } from "playwright-core";

export const OUTBOX_DATABASE = "lunora-outbox";
const OUTBOX_STORE = "entries";
const TAB_WRITE_PREFIX = "lunora:tab-write:";

export interface OutboxReport {
  kind: "rejected" | "storage";
  code: string;
  /** `onWriteRejected`: the write's args. */
  args?: unknown;
  /** `onStorageFailure`: its `data`. */
  data?: unknown;
  /** The tab-write record keys in IndexedDB when the report fired; `null` until read. */
  tabWriteKeysAtReport: string[] | null;
}

interface WatchedWindow {
  lunoraChat: {
    executor: {
      addListeners(callbacks: {
        onWriteRejected?: (event: { code: string; args: unknown }) => void;
        onStorageFailure?: (event: { code: string; data?: unknown }) => void;
      }): void;
    };
  };
  outboxReports: OutboxReport[];
}

/** Records every report of the tab's outbox from now on (see {@link outboxReports}). */
export async function watchOutboxReports(page: Page): Promise<void> {
  await page.evaluate(
    async ({ database, store, prefix }) => {
      const w = window as unknown as WatchedWindow;
      // Opened beforehand, so the read below starts inside the report handler itself.
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open(database);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      const reports: OutboxReport[] = (w.outboxReports = []);
      const record = (report: Omit<OutboxReport, "tabWriteKeysAtReport">) => {
        const entry: OutboxReport = { ...report, tabWriteKeysAtReport: null };
        reports.push(entry);
        // IndexedDB runs transactions over one store in the order they were
        // created: a read created here sees every change committed before
        // the report and none issued after it (a delete that follows the
        // report is not seen).
        const request = db.transaction(store, "readonly").objectStore(store).getAllKeys();
        request.onsuccess = () => {
          entry.tabWriteKeysAtReport = request.result.filter((key): key is string => typeof key === "string" && key.startsWith(prefix));
        };
      };
      w.lunoraChat.executor.addListeners({
        onWriteRejected: ({ code, args }) => record({ kind: "rejected", code, args }),
        onStorageFailure: ({ code, data }) => record({ kind: "storage", code, data }),
      });
    },
    { database: OUTBOX_DATABASE, store: OUTBOX_STORE, prefix: TAB_WRITE_PREFIX },
  );
}

/** The reports recorded so far, once each one's IndexedDB read is in. */
export async function outboxReports(page: Page, atLeast: number): Promise<OutboxReport[]> {
  await page.waitForFunction(
    (count) => {
      const reports = (window as unknown as WatchedWindow).outboxReports;
      return reports.length >= count && reports.every((report) => report.tabWriteKeysAtReport !== null);
    },
    atLeast,
  );
  return page.evaluate(() => (window as unknown as WatchedWindow).outboxReports);
}

/** The tab-write record keys in the origin's outbox database now. */
export async function storedTabWriteKeys(page: Page): Promise<string[]> {
  return page.evaluate(
    async ({ database, store, prefix }) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open(database);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      try {
        const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
          const request = db.transaction(store, "readonly").objectStore(store).getAllKeys();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
        return keys.filter((key): key is string => typeof key === "string" && key.startsWith(prefix));
      } finally {
        db.close();
      }
    },
    { database: OUTBOX_DATABASE, store: OUTBOX_STORE, prefix: TAB_WRITE_PREFIX },
  );
}

/**
 * Resolves once the origin's outbox database holds some tab-write record
 * (`present`) or none. Polled from here: `page.waitForFunction` takes a
 * returned promise for a truthy answer and does not wait for it.
 */
export async function waitForTabWrites(page: Page, present: boolean): Promise<void> {
  while ((await storedTabWriteKeys(page)).length > 0 !== present) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Stores `entries` (key → raw string value) in the origin's outbox database, as another tab or an older version might have left them. */
export async function putOutboxEntries(page: Page, entries: Array<[key: string, value: string]>): Promise<void> {
  await page.evaluate(
    async ({ database, store, entries }) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open(database);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      try {
        await new Promise<void>((resolve, reject) => {
          const transaction = db.transaction(store, "readwrite");
          for (const [key, value] of entries) transaction.objectStore(store).put(value, key);
          transaction.oncomplete = () => resolve();
          transaction.onerror = () => reject(transaction.error);
        });
      } finally {
        db.close();
      }
      // The notice every tab's outbox re-counts storage on (OutboxPersistence.onChange).
      const channel = new BroadcastChannel(`lunora-outbox:${database}`);
      channel.postMessage("changed");
      channel.close();
    },
    { database: OUTBOX_DATABASE, store: OUTBOX_STORE, entries },
  );
}
