import type { StorageAdapter } from "@tanstack/offline-transactions";
import { LunoraError } from "../protocol/index.js";
import { isAssigned, roomKey, type WriteMetadata } from "./write.js";

/**
 * Who a write is sent as: an identity's `clientId` and the last `clientSeq`
 * handed out per room. The room keeps a watermark per (identity, clientId),
 * so a clientSeq must never be handed out twice for one clientId.
 *
 * - The **durable** writer of an identity is stored (`lunora:writer:<identity>`)
 *   and shared by every session and tab of that identity; only the leader tab
 *   hands out its numbers.
 * - An **ephemeral** writer has a fresh clientId per session: followers and
 *   sessions whose storage failed send under it.
 */
export interface Writer {
  identity: string;
  clientId: string;
  seqs: Map<string, number>;
  durable: boolean;
  /** Numbers were handed out since the last save. */
  dirty: boolean;
}

/** A writer of `identity`; without `clientId`, a new one (and no numbers handed out yet). */
function writerOf(identity: string, durable: boolean, clientId: string = crypto.randomUUID(), seqs = new Map<string, number>()): Writer {
  return { identity, clientId, seqs, durable, dirty: false };
}

export function ephemeralWriter(identity: string): Writer {
  return writerOf(identity, false);
}

export function writerKey(identity: string): string {
  return `lunora:writer:${identity}`;
}

/** Makes `writer` hand out clientSeqs after `meta`'s, when `meta` is one of its writes. */
export function raiseCounter(writer: Writer, meta: WriteMetadata): void {
  if (!isAssigned(meta) || writer.clientId !== meta.clientId || writer.identity !== meta.identity) return;
  const key = roomKey(meta.party, meta.room);
  if ((writer.seqs.get(key) ?? 0) < meta.clientSeq) {
    writer.seqs.set(key, meta.clientSeq);
    writer.dirty = true;
  }
}

export function identityChanged(): LunoraError {
  return new LunoraError("IDENTITY_CHANGED", "write queued under another identity: not sent");
}

/** Loads and saves durable writers; one save at a time (a save in flight is followed by one more when numbers moved meanwhile). */
export class WriterStore {
  readonly #storage: StorageAdapter;
  #saving: Promise<void> | undefined;
  #disposed = false;

  constructor(storage: StorageAdapter) {
    this.#storage = storage;
  }

  /** The identity's durable writer, created and stored on first use; `undefined` when storage fails (reported by the guarded storage). */
  async load(identity: string): Promise<Writer | undefined> {
    try {
      const stored = await this.#storage.get(writerKey(identity));
      const parsed = stored ? (JSON.parse(stored) as { clientId?: unknown; seqs?: unknown }) : undefined;
      if (parsed && typeof parsed.clientId === "string" && typeof parsed.seqs === "object" && parsed.seqs !== null) {
        return writerOf(identity, true, parsed.clientId, new Map(Object.entries(parsed.seqs as Record<string, number>).filter(([, seq]) => Number.isInteger(seq))));
      }
      const writer = writerOf(identity, true);
      writer.dirty = true; // stored before its first number goes out
      await this.save(writer);
      return writer.dirty ? undefined : writer;
    } catch {
      // Without a durable writer every write goes out under a per-session
      // clientId and is not kept across reloads.
      return undefined;
    }
  }

  /** Stores the writer's counters if they moved. A clientSeq reaches the room only after this resolved. */
  async save(writer: Writer | undefined): Promise<void> {
    while (writer?.dirty && !this.#disposed) {
      if (this.#saving) {
        await this.#saving;
        continue;
      }
      writer.dirty = false;
      const value = JSON.stringify({ clientId: writer.clientId, seqs: Object.fromEntries(writer.seqs) });
      let failed = false;
      this.#saving = this.#storage
        .set(writerKey(writer.identity), value)
        .catch(() => {
          failed = true;
        })
        .finally(() => {
          this.#saving = undefined;
        });
      await this.#saving;
      if (failed) {
        // Reported by the guarded storage; the write still goes out online.
        writer.dirty = true;
        return;
      }
    }
  }

  dispose(): void {
    this.#disposed = true;
  }
}
