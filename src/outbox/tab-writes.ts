import type { StorageAdapter } from "@tanstack/offline-transactions";
import { coalesced } from "./coalesced.js";
import { isSendable, isWriteMetadata, type AssignedWriteMetadata } from "./write.js";
import type { LockManagerLike } from "./leadership.js";

/**
 * Writes of a tab that does not lead the outbox.
 *
 * Only the leader tab runs the durable queue of `@tanstack/offline-transactions`.
 * Another tab sends its own writes itself, at once, on its own socket — so a
 * follower's write never waits for the leader (which may be busy, offline,
 * or hidden and throttled). It still stores each one, under
 * `lunora:tab-write:<id>` with the tab that owns it, for two reasons:
 *
 * - every tab counts undelivered writes from storage, so the other tabs show
 *   it as pending too;
 * - if the owner tab closes or crashes first, the leader adopts the record
 *   and sends it under the clientSeq it was given (exactly once: the room
 *   keeps a watermark per clientId and answers a repeat with the stored
 *   outcome).
 *
 * A record is adopted only once its owner is gone: each tab holds a Web Lock
 * named after it for its whole life, and the browser releases it when the
 * document goes away however that happens. While the owner lives, only the
 * owner sends — two senders of one clientId could otherwise race a gap
 * filler past a write still in flight.
 */
export const TAB_WRITE_PREFIX = "lunora:tab-write:";

export interface TabWriteRecord {
  v: 1;
  /** The tab that sends it (its presence lock is {@link tabLockName}). */
  owner: string;
  /** Enqueue time (ms), for ordering among records of one room. */
  createdAt: number;
  meta: AssignedWriteMetadata;
}

/** A stored tab-write record, if it is readable and its write can be sent (assigned, fits a frame). */
export function parseTabWrite(value: string): TabWriteRecord | undefined {
  try {
    const parsed = JSON.parse(value) as Partial<TabWriteRecord> | null;
    const meta = parsed?.meta;
    if (parsed?.v === 1 && typeof parsed.owner === "string" && typeof parsed.createdAt === "number" && isWriteMetadata(meta) && isSendable(meta)) {
      return parsed as TabWriteRecord;
    }
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

/**
 * The owner a stored tab-write record names, if any, even when the record is
 * otherwise unreadable: a tab of a newer version may still be sending a
 * record this version cannot read, so it is left alone while its owner lives.
 */
function ownerNamedBy(value: string): string | undefined {
  try {
    const owner = (JSON.parse(value) as { owner?: unknown } | null)?.owner;
    return typeof owner === "string" ? owner : undefined;
  } catch {
    return undefined;
  }
}

export function tabLockName(tabId: string): string {
  return `lunora-outbox-tab:${tabId}`;
}

/**
 * This tab's presence (a Web Lock held for the tab's life) and the means to
 * learn when another tab is gone.
 */
export class TabPresence {
  readonly tabId: string = crypto.randomUUID();
  readonly #locks: LockManagerLike;
  readonly #release: () => void;
  readonly #watched = new Set<string>();
  /** Tabs whose presence lock this tab obtained: gone for good (a tab id is never reused). */
  readonly #gone = new Set<string>();
  readonly #abort = new AbortController();

  constructor(locks: LockManagerLike) {
    this.#locks = locks;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    this.#release = release;
    this.#locks.request(tabLockName(this.tabId), {}, () => held).catch(() => undefined);
  }

  /** Whether the tab `tabId` is known to be gone (see {@link whenGone}). */
  isGone(tabId: string): boolean {
    return this.#gone.has(tabId);
  }

  /**
   * Calls `onGone` once the tab `tabId` is gone: its presence lock is
   * granted to this tab at once when the tab is already gone, else when it
   * goes. Once per tab, however often asked. (A tab that has asked for its
   * own lock but not been granted it yet is ahead of this request in the
   * lock's queue, so it counts as alive.)
   */
  whenGone(tabId: string, onGone: () => void): void {
    if (tabId === this.tabId || this.#watched.has(tabId) || this.#gone.has(tabId)) return;
    this.#watched.add(tabId);
    this.#locks
      .request(tabLockName(tabId), { signal: this.#abort.signal }, () => {
        this.#watched.delete(tabId);
        this.#gone.add(tabId);
        onGone();
        return undefined; // released at once: nobody else needs it
      })
      .catch(() => this.#watched.delete(tabId));
  }

  dispose(): void {
    this.#abort.abort();
    this.#release();
  }
}

/** What {@link TabWrites} needs of the outbox. */
export interface TabWritesHost {
  /** Whether this tab may adopt now (it leads, and is not disposed). */
  canAdopt(): boolean;
  /** Resolves once the outbox knows its identity. */
  ready(): Promise<void>;
  /** Whether the outbox already holds the write `id`. */
  knows(id: string): boolean;
  /** Keys of the tab-write records at the last count of storage. */
  storedKeys(): string[];
  /**
   * Sends the write of a tab that is gone, under its stored clientId /
   * clientSeq, and deletes `key` once settled. A write of another identity
   * is never sent: its record is deleted, then the write is reported — the
   * returned promise, which the pass awaits so it never reads the record
   * again meanwhile.
   */
  adopt(id: string, record: TabWriteRecord, key: string): Promise<void> | undefined;
  /**
   * Deletes the unreadable record `key` (nobody can send its write), then
   * reports it: nothing is lost silently. The pass awaits it.
   */
  discardUnreadable(key: string): Promise<void>;
}

/**
 * This tab's part in the writes tabs send themselves: storing its own
 * (when it does not lead) and, when it leads, adopting those of tabs that
 * are gone.
 */
export class TabWrites {
  readonly presence: TabPresence;
  readonly #storage: StorageAdapter;
  readonly #host: TabWritesHost;
  /**
   * Adopts the stored writes of tabs that are gone (closed or crashed before
   * their writes were delivered), and watches the owners of the others so
   * it hears when they go. Coalesced: one pass at a time.
   */
  readonly adoptOrphans = coalesced(
    () => this.#adoptPass(),
    () => this.#host.canAdopt(),
  );

  /**
   * Records this page has deleted and reported (unreadable, or of another
   * identity). A delete that fails still counts as done (the report goes
   * out), but the record stays: without this, every later pass — each
   * storage change starts one — read it again and reported it again.
   * Bounded by the records in storage: a key is forgotten here once a pass
   * no longer finds it.
   */
  readonly #reported = new Set<string>();

  constructor(locks: LockManagerLike, storage: StorageAdapter, host: TabWritesHost) {
    this.presence = new TabPresence(locks);
    this.#storage = storage;
    this.#host = host;
  }

  /** Stores a write this tab sends itself; resolves its record key, or `undefined` when storage failed (reported by the guarded storage). */
  async store(id: string, meta: AssignedWriteMetadata, createdAt: Date): Promise<string | undefined> {
    const key = TAB_WRITE_PREFIX + id;
    const record: TabWriteRecord = { v: 1, owner: this.presence.tabId, createdAt: createdAt.getTime(), meta };
    try {
      await this.#storage.set(key, JSON.stringify(record));
      return key;
    } catch {
      return undefined; // it still goes out from this tab
    }
  }

  dispose(): void {
    this.presence.dispose();
  }

  async #adoptPass(): Promise<void> {
    await this.#host.ready();
    const keys = this.#host.storedKeys();
    const stored = new Set(keys);
    for (const key of this.#reported) if (!stored.has(key)) this.#reported.delete(key);
    for (const key of keys) {
      const id = key.slice(TAB_WRITE_PREFIX.length);
      if (this.#reported.has(key) || this.#host.knows(id) || !this.#host.canAdopt()) continue;
      const value = await this.#storage.get(key).catch(() => null);
      if (value === null) continue; // delivered meanwhile (or storage failed: the next pass reads it again)
      const record = parseTabWrite(value);
      const owner = record ? record.owner : ownerNamedBy(value);
      if (owner === this.presence.tabId) continue;
      if (owner !== undefined && !this.presence.isGone(owner)) {
        // The next pass adopts it, once its owner's lock is ours.
        this.presence.whenGone(owner, () => this.adoptOrphans());
        continue;
      }
      if (this.#host.knows(id) || !this.#host.canAdopt()) continue;
      const forgetting = record ? this.#host.adopt(id, record, key) : this.#host.discardUnreadable(key);
      if (forgetting) {
        this.#reported.add(key);
        await forgetting;
      }
    }
  }
}
