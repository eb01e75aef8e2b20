import type { StorageAdapter } from "@tanstack/offline-transactions";
import { Listeners } from "../client/listeners.js";
import type { LunoraError } from "../protocol/index.js";
import { storageFailureCode } from "./persistence.js";
import type { WriteMetadata } from "./write.js";

/** What `onWriteRejected` receives: once per permanently rejected write, before its rollback. */
export interface WriteRejectedEvent {
  /** The collection the write belongs to (for a custom mutator: the first collection it touched, else its `serverRef`). */
  collection: string;
  /** The optimistic row being rolled back (inserts; for custom mutators the first row they wrote), if any. */
  row: Record<string, unknown> | undefined;
  error: LunoraError;
  /** The server's code (`INVALID_ARGS`, `CONFLICT`, …) or `IDENTITY_CHANGED`. */
  code: string;
  /** The server mutator and the args it was sent with. */
  mutator: string;
  args: unknown;
}

/**
 * What `onStorageFailure` receives.
 *
 * - `STORAGE_FAILURE` / `QUOTA_EXCEEDED`: storage failed; the write still
 *   goes out while online, it will not survive a reload (once per streak of
 *   failures).
 * - `UNREADABLE_WRITE`: a stored write could not be read (a corrupt record,
 *   or one of an incompatible version) and was deleted: it is never sent.
 *   Once per record; `data.key` is its storage key.
 *
 * @example
 * ```ts
 * defineCollections(client, defs, {
 *   onStorageFailure: ({ code }) =>
 *     code === "UNREADABLE_WRITE" ? toast("A change saved earlier could not be read and was lost") : toast("Changes may not survive a reload"),
 * });
 * ```
 */
export interface StorageFailureEvent {
  code: "STORAGE_FAILURE" | "QUOTA_EXCEEDED" | "UNREADABLE_WRITE";
  message: string;
  /** `UNREADABLE_WRITE`: the deleted record's storage key. */
  data?: { key: string };
}

/** The callbacks an app gives `defineCollections` / `bindMutators`. */
export interface OutboxCallbacks {
  onWriteRejected?: (event: WriteRejectedEvent) => void;
  onStorageFailure?: (event: StorageFailureEvent) => void;
  onLeadershipChange?: (isLeader: boolean) => void;
}

/**
 * What the outbox tells the app: rejected writes, storage failures (once per
 * streak, not once per write) and leadership changes, to every registered
 * callback.
 */
export class OutboxReports {
  readonly #rejected = new Listeners<[WriteRejectedEvent]>();
  readonly #storageFailures = new Listeners<[StorageFailureEvent]>();
  readonly #leadership = new Listeners<[isLeader: boolean]>();
  #lastStorageFailure: string | undefined;

  add(callbacks: OutboxCallbacks): void {
    if (callbacks.onWriteRejected) this.#rejected.add(callbacks.onWriteRejected);
    if (callbacks.onStorageFailure) this.#storageFailures.add(callbacks.onStorageFailure);
    if (callbacks.onLeadershipChange) this.#leadership.add(callbacks.onLeadershipChange);
  }

  rejected(meta: WriteMetadata, error: LunoraError): void {
    this.#rejected.emit({
      collection: meta.collection ?? meta.name,
      row: meta.row,
      error,
      code: error.code,
      mutator: meta.name,
      args: meta.args,
    });
  }

  leadership(isLeader: boolean): void {
    this.#leadership.emit(isLeader);
  }

  storageFailure(error: unknown): void {
    const code = storageFailureCode(error);
    if (this.#lastStorageFailure === code) return;
    this.#lastStorageFailure = code;
    const message = error instanceof Error ? error.message : String(error);
    this.#storageFailures.emit({
      code,
      message: `outbox storage failed (${message}): writes still go out online but will not survive a reload`,
    });
  }

  /** A stored write that could not be read, already deleted (each record once, after its delete: see docs/writes.md). */
  unreadableWrite(key: string): void {
    this.#storageFailures.emit({
      code: "UNREADABLE_WRITE",
      message: `a stored write could not be read (corrupt, or from an incompatible version) and was deleted: it will not be sent`,
      data: { key },
    });
  }

  /**
   * `storage` with every failure reported through `onStorageFailure`;
   * `changed` runs after each successful change (set, delete, clear).
   */
  guardStorage(storage: StorageAdapter, changed: () => void): StorageAdapter {
    /** Runs `operation`, then `succeeded`; a failure (also a synchronous throw) is reported and rethrown. */
    const guard = async <R>(operation: () => Promise<R>, succeeded?: () => void): Promise<R> => {
      try {
        const result = await operation();
        succeeded?.();
        return result;
      } catch (error) {
        this.storageFailure(error);
        throw error;
      }
    };
    return {
      get: (key) => guard(() => storage.get(key)),
      set: (key, value) =>
        guard(
          () => storage.set(key, value),
          () => {
            this.#lastStorageFailure = undefined; // a new streak of failures is reported again
            changed();
          },
        ),
      // A record that cannot be deleted is replayed after a reload and answered from the room's stored outcome.
      delete: (key) => guard(() => storage.delete(key), changed).catch(() => undefined),
      keys: () => guard(() => storage.keys()),
      clear: () => guard(() => storage.clear(), changed),
    };
  }
}
