import type { StorageAdapter } from "@tanstack/offline-transactions";
import { coalesced } from "./coalesced.js";
import { writeMetadataOf } from "./write.js";
import { TAB_WRITE_PREFIX, parseTabWrite } from "./tab-writes.js";

/** Key prefix of the records `@tanstack/offline-transactions` keeps (its `OutboxManager`). */
export const QUEUED_RECORD_PREFIX = "tx:";

/**
 * Which writes are undelivered in STORAGE, per identity: the leader's queue
 * (`tx:` records) and the writes other tabs are sending themselves
 * (`lunora:tab-write:` records). Every tab reads this, so no tab says "all
 * saved" while a write of its user sits in storage — whichever tab made it,
 * whichever tab will send it.
 *
 * Re-counted after each change the outbox makes and each change another tab
 * announces (`OutboxPersistence.onChange`); re-counts are coalesced (one
 * running, at most one queued). A record's identity never changes, so each
 * key is read once and only `keys()` runs per re-count.
 */
export class StoredWrites {
  readonly #storage: StorageAdapter;
  readonly #onCounted: () => void;
  /** Key → (write id, identity), for the keys present at the last count. */
  #known = new Map<string, { id: string; identity: string | undefined }>();
  #disposed = false;
  /** Schedules a re-count. */
  readonly refresh = coalesced(
    () => this.#count(),
    () => !this.#disposed,
  );

  constructor(storage: StorageAdapter, onCounted: () => void) {
    this.#storage = storage;
    this.#onCounted = onCounted;
  }

  /** Ids of the stored writes of `identity` at the last count. */
  idsOf(identity: string | undefined): Set<string> {
    const ids = new Set<string>();
    if (identity === undefined) return ids;
    for (const entry of this.#known.values()) if (entry.identity === identity) ids.add(entry.id);
    return ids;
  }

  /** Keys of the tab-write records at the last count. */
  tabWriteKeys(): string[] {
    return [...this.#known.keys()].filter((key) => key.startsWith(TAB_WRITE_PREFIX));
  }

  dispose(): void {
    this.#disposed = true;
  }

  async #count(): Promise<void> {
    const known = new Map<string, { id: string; identity: string | undefined }>();
    try {
      for (const key of await this.#storage.keys()) {
        if (!key.startsWith(QUEUED_RECORD_PREFIX) && !key.startsWith(TAB_WRITE_PREFIX)) continue;
        const previous = this.#known.get(key);
        if (previous) {
          known.set(key, previous);
          continue;
        }
        const value = await this.#storage.get(key);
        if (value !== null) known.set(key, entryOf(key, value)); // null: delivered meanwhile
      }
    } catch {
      // Storage failing is reported by the guarded storage; the last count stands.
      return;
    }
    if (this.#disposed) return;
    this.#known = known;
    this.#onCounted();
  }
}

function entryOf(key: string, value: string): { id: string; identity: string | undefined } {
  if (key.startsWith(TAB_WRITE_PREFIX)) {
    const record = parseTabWrite(value);
    return { id: key.slice(TAB_WRITE_PREFIX.length), identity: record?.meta.identity };
  }
  let identity: string | undefined;
  try {
    // (A record whose identity is not a string never matches an identity.)
    identity = writeMetadataOf((JSON.parse(value) as { metadata?: Record<string, unknown> }).metadata)?.identity;
  } catch {
    // not a record this outbox wrote: nobody's write
  }
  return { id: key.slice(QUEUED_RECORD_PREFIX.length), identity };
}
