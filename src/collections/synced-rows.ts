import type { SyncConfig } from "@tanstack/db";
import { LunoraError, type OpBlock, type Row, type RowKey } from "../protocol/index.js";

/**
 * What the eager and the on-demand sync runs share: the room's rows as
 * written into a TanStack DB collection, and reading a poke's op blocks.
 */

/** The sync-function parameters TanStack DB hands a source. */
export type SyncParams<TRow extends object, TKey extends string | number> = Parameters<SyncConfig<TRow, TKey>["sync"]>[0];

/**
 * The room's rows of one sync run, by wire key, and the collection keys
 * they were written under. Writes go inside a sync transaction the run has
 * opened (`begin` … `commit`).
 */
export class SyncedRows<TRow extends object, TKey extends string | number> {
  /**
   * Wire key → the room's row exactly as applied, never an optimistic
   * overlay. The query cache persists these, not the collection's visible
   * state.
   */
  readonly rows = new Map<RowKey, TRow>();
  /**
   * Wire key → collection key of every written row. TanStack DB 0.15 throws
   * on a sync `insert` of a key it already holds, so each write must know
   * whether its key is present — counting rows written but not yet applied
   * (core holds sync commits while an optimistic write persists, so reading
   * the collection would miss them).
   */
  readonly keys = new Map<RowKey, TKey>();
  readonly present = new Set<TKey>();
  /**
   * A transaction was abandoned after writes had already changed the maps
   * above: they may no longer say what the collection holds (a row deleted
   * from them may still be shown), so only a truncate clears it for sure.
   */
  diverged = false;
  readonly #params: SyncParams<TRow, TKey>;
  readonly #getKey: (row: TRow) => TKey;

  constructor(params: SyncParams<TRow, TKey>, getKey: (row: TRow) => TKey) {
    this.#params = params;
    this.#getKey = getKey;
  }

  /**
   * Writes the row under `wireKey` as it is now: `row` is upserted (its
   * collection key may have changed: a custom `getKey` over a mutable
   * column), `undefined` deletes the row if it was written.
   */
  write(wireKey: RowKey, row: TRow | undefined): void {
    const { write } = this.#params;
    const previous = this.keys.get(wireKey);
    if (row === undefined) {
      this.rows.delete(wireKey);
      if (previous === undefined) return; // never written: nothing to delete
      write({ type: "delete", key: previous });
      this.keys.delete(wireKey);
      this.present.delete(previous);
      return;
    }
    const key = this.#getKey(row);
    this.rows.set(wireKey, row);
    if (previous === key && this.present.has(key)) {
      // The common case, an update of a held row: the key maps already say so.
      write({ type: "update", value: row });
      return;
    }
    if (previous !== undefined) {
      write({ type: "delete", key: previous });
      this.present.delete(previous);
    }
    write({ type: this.present.has(key) ? "update" : "insert", value: row });
    this.keys.set(wireKey, key);
    this.present.add(key);
  }

  /**
   * Removes every row in one sync transaction — by one delete per row with
   * `byDelete`, else by a truncate that keeps readiness as it is (dropping
   * rows is not a snapshot) — and forgets them.
   */
  drop(byDelete?: boolean): void {
    const { begin, truncate, write, commit } = this.#params;
    begin();
    if (byDelete && !this.diverged) for (const key of this.present) write({ type: "delete", key });
    else truncate({ markReady: false });
    commit();
    this.clear();
    this.diverged = false;
  }

  /**
   * Inside an open transaction: empties the collection for a reset (a
   * truncate, when it may hold rows) and forgets every row.
   */
  truncateForReset(): void {
    if (this.keys.size > 0 || this.diverged) this.#params.truncate();
    this.clear();
    this.diverged = false;
  }

  /** Forgets every row (the collection has dropped them, or is about to). */
  clear(): void {
    this.rows.clear();
    this.keys.clear();
    this.present.clear();
  }

  /**
   * Discards a half-written transaction. An already-aborted signal makes
   * `commit` abandon it before core accepts it; its receipt then rejects
   * with `AbortError`, which is expected here.
   */
  abandonTransaction(): void {
    this.diverged = true;
    try {
      const receipt = this.#params.commit(AbortSignal.abort());
      if (receipt !== true) receipt.catch(() => undefined);
    } catch {
      // No open transaction (begin itself failed): nothing to abandon.
    }
  }
}

/**
 * Reads a poke's op blocks in place (`[group, kind, ...items]`, items from
 * index 2): a put goes to `put` as received, a patch merged into the row
 * `held` returns (`{ ...held, ...patch }`), a delete to `remove` by key.
 * A patch of a row not held means the room's idea of this subscription and
 * ours have diverged, and only a reset can reconcile them: PROTOCOL_ERROR.
 */
export function forEachRowOp<TRow extends object>(
  blocks: readonly OpBlock[],
  keyColumn: string,
  held: (key: RowKey) => TRow | undefined,
  put: (key: RowKey, row: TRow) => void,
  remove: (key: RowKey) => void,
): void {
  for (const block of blocks) {
    const kind = block[1];
    for (let i = 2; i < block.length; i++) {
      if (kind === "d") {
        remove(block[i] as RowKey);
        continue;
      }
      const item = block[i] as Row;
      const key = item[keyColumn] as RowKey;
      if (kind === "p") {
        put(key, item as TRow);
        continue;
      }
      const row = held(key);
      if (row === undefined) throw new LunoraError("PROTOCOL_ERROR", `patch for key ${JSON.stringify(key)} that the subscription does not hold`);
      put(key, { ...row, ...item } as TRow);
    }
  }
}
