import type { SyncConfig } from "@tanstack/db";
import type { LunoraClient } from "../client/lunora-client.js";
import { reportListenerError } from "../client/listeners.js";
import type { PokeUpdate, Subscription } from "../client/subscription.js";
import type { Cursor, LunoraError, RowKey, Source } from "../protocol/index.js";

/** The sync-function parameters TanStack DB hands a source. */
export type SyncParams<TRow extends object, TKey extends string | number> = Parameters<SyncConfig<TRow, TKey>["sync"]>[0];

/** Where a collection reads from. */
export interface SyncTarget {
  party: string;
  room: string;
  source: Source;
}

/** Collection metadata key under which the cursor of the synced rows is stored (for persistence). */
export const CURSOR_METADATA_KEY = "lunora:cursor";

interface SyncRunOptions<TRow extends object, TKey extends string | number> {
  client: LunoraClient<any>;
  getKey: (row: TRow) => TKey;
  onError: ((error: LunoraError) => void) | undefined;
}

/**
 * One TanStack DB sync run of a Lunora collection (from `sync()` to its
 * cleanup). It owns the collection's synced rows and the cursor they
 * correspond to, and writes each poke as exactly one `begin` … `commit`.
 */
export class CollectionSyncRun<TRow extends object, TKey extends string | number> {
  readonly #params: SyncParams<TRow, TKey>;
  readonly #options: SyncRunOptions<TRow, TKey>;
  #target: SyncTarget | undefined;
  #subscription: Subscription | undefined;
  /** Identifies the live subscription's handler; calls from an older one are ignored. */
  #generation: object | undefined;
  #cursor: Cursor | undefined;
  /**
   * Wire key → collection key of every synced row. TanStack DB 0.15 throws on
   * a sync `insert` of a key it already holds, so each `put` must know whether
   * its key is present — counting rows written but not yet applied (core
   * holds sync commits while an optimistic write persists, so reading the
   * collection would miss them).
   */
  readonly #keys = new Map<RowKey, TKey>();
  readonly #present = new Set<TKey>();
  #authoritative = false;
  #ready = false;
  #lastSyncedAt: number | undefined;

  constructor(params: SyncParams<TRow, TKey>, options: SyncRunOptions<TRow, TKey>) {
    this.#params = params;
    this.#options = options;
  }

  get cursor(): Cursor | undefined {
    return this.#cursor;
  }

  get room(): string | undefined {
    return this.#target?.room;
  }

  get isAuthoritative(): boolean {
    return this.#authoritative;
  }

  get lastSyncedAt(): number | undefined {
    return this.#lastSyncedAt;
  }

  /**
   * Points the run at `target` (or nowhere): stops the old subscription, drops
   * its rows in one transaction, subscribes the new one from scratch.
   */
  point(target: SyncTarget | undefined): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#generation = undefined;
    if (this.#target !== undefined || this.#present.size > 0) {
      const { begin, truncate, commit } = this.#params;
      begin();
      // Keep readiness as it is: detaching is not a snapshot of the new scope.
      truncate({ markReady: false });
      commit();
    }
    this.#forgetRows();
    this.#target = target;
    if (!target) return;

    const generation = {};
    this.#generation = generation;
    this.#subscription = this.#options.client.subscribe({
      party: target.party,
      room: target.room,
      source: target.source,
      handler: {
        cursor: () => (this.#generation === generation ? this.#cursor : undefined),
        applyPoke: (update) => {
          if (this.#generation === generation) this.#applyPoke(update);
        },
        onError: (error) => {
          if (this.#generation === generation) this.#onError(error);
        },
      },
    });
  }

  /** Ends the run (TanStack cleanup). */
  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#generation = undefined;
  }

  #applyPoke({ reset, ops, cursor }: PokeUpdate): void {
    const { begin, write, commit, truncate, metadata } = this.#params;
    const getKey = this.#options.getKey;
    begin();
    try {
      if (reset) {
        truncate();
        this.#forgetRows();
      }
      for (const op of ops) {
        if (op.op === "put") {
          const row = op.row as TRow;
          const key = getKey(row);
          const previous = this.#keys.get(op.key);
          if (previous !== undefined && previous !== key) {
            // The row's collection key changed (a custom getKey over a mutable column).
            write({ type: "delete", key: previous });
            this.#present.delete(previous);
          }
          write({ type: this.#present.has(key) ? "update" : "insert", value: row });
          this.#keys.set(op.key, key);
          this.#present.add(key);
        } else {
          const key = this.#keys.get(op.key);
          if (key === undefined) continue; // never held: nothing to delete
          write({ type: "delete", key });
          this.#keys.delete(op.key);
          this.#present.delete(key);
        }
      }
      metadata?.collection.set(CURSOR_METADATA_KEY, cursor);
      commit();
    } catch (error) {
      this.#abandonTransaction();
      // The client resets and resubscribes this subscription when applyPoke throws.
      this.#authoritative = false;
      throw error;
    }
    this.#cursor = cursor;
    this.#authoritative = true;
    this.#lastSyncedAt = Date.now();
    this.#markReadyOnce();
  }

  #onError(error: LunoraError): void {
    this.#authoritative = false;
    try {
      this.#options.onError?.(error);
    } catch (thrown) {
      reportListenerError(thrown);
    }
    // A failed subscription will not deliver a snapshot; without this,
    // preload() and live queries would wait forever.
    this.#markReadyOnce();
  }

  #markReadyOnce(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#params.markReady();
  }

  /**
   * Discards a half-written transaction. An already-aborted signal makes
   * `commit` abandon it before core accepts it; its receipt then rejects
   * with `AbortError`, which is expected here.
   */
  #abandonTransaction(): void {
    try {
      const receipt = this.#params.commit(AbortSignal.abort());
      if (receipt !== true) receipt.catch(() => undefined);
    } catch {
      // No open transaction (begin itself failed): nothing to abandon.
    }
  }

  #forgetRows(): void {
    this.#keys.clear();
    this.#present.clear();
    this.#cursor = undefined;
    this.#authoritative = false;
  }
}
