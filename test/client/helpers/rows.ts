import { createCollection } from "@tanstack/db";
import { lunoraCollectionOptions } from "../../../src/collections/index.js";
import type { LunoraClient } from "../../../src/client/index.js";
import type { AnyLunoraApi, LunoraError, OpBlock, Row, RowKey } from "../../../src/protocol/index.js";
import { onCleanup } from "./harness.js";
import { groupOf } from "./scripted-room.js";

/** A put block of one or more rows for `sub`'s group (see `groupOf`). */
export function put(sub: string, ...rows: Array<Row & { id: RowKey }>): OpBlock {
  return [groupOf(sub), "p", ...rows];
}

/** A patch block for `sub`'s group: each patch is the key plus the changed columns. */
export function patch(sub: string, ...patches: Array<Row & { id: RowKey }>): OpBlock {
  return [groupOf(sub), "u", ...patches];
}

export function del(sub: string, ...keys: RowKey[]): OpBlock {
  return [groupOf(sub), "d", ...keys];
}

/** A row without TanStack's virtual `$…` props. */
export function plain(row: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).filter(([key]) => !key.startsWith("$")));
}

/** The collection's rows, plain, sorted by id. */
export function rowsOf(collection: { toArray: object[] }): Record<string, unknown>[] {
  return collection.toArray.map(plain).sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

/** A list collection over `messages`, cleaned up after the test, with its errors recorded. */
export function messagesCollection(client: LunoraClient<AnyLunoraApi>, options: { room?: string } = {}) {
  const errors: LunoraError[] = [];
  const result = lunoraCollectionOptions({
    client,
    list: "messages",
    ...(options.room ? { shardKey: options.room } : {}),
    onError: (error) => errors.push(error),
  });
  const collection = createCollection(result.config);
  onCleanup(() => collection.cleanup());
  return { collection, errors, ...result };
}

/**
 * Records every change batch a collection emits after this call (each batch
 * is one committed update). It subscribes with the current state included —
 * TanStack only reports deletes of keys a subscriber was shown — and leaves
 * that initial batch out.
 */
export function recordBatches(collection: {
  subscribeChanges: (
    cb: (changes: Array<{ type: string; key: unknown; value: object }>) => void,
    options?: { includeInitialState?: boolean },
  ) => { unsubscribe(): void };
  size: number;
}) {
  const batches: Array<Array<{ type: string; key: unknown; value: Record<string, unknown> }>> = [];
  let skipInitial = collection.size > 0;
  const subscription = collection.subscribeChanges(
    (changes) => {
      if (skipInitial) {
        skipInitial = false;
        return;
      }
      batches.push(changes.map((change) => ({ type: change.type, key: change.key, value: plain(change.value) })));
    },
    { includeInitialState: true },
  );
  onCleanup(() => subscription.unsubscribe());
  return batches;
}
