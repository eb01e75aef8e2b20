import type { Collection } from "@tanstack/db";
import { IDBFactory } from "fake-indexeddb";
import { WebSocket } from "ws";
import { afterEach } from "vitest";
import {
  LunoraClient,
  createIndexedDbPersistence,
  defineCollections,
  type OutboxOptions,
  type OutboxPersistence,
  type StorageFailureEvent,
  type WriteRejectedEvent,
} from "../../src/index.js";
import type { FrameLog } from "../helpers/recording-websocket.js";
import { defineMutator } from "../../src/mutators/index.js";

export type Item = { id: string; listId: string; title: string; rank: number };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
export const onCleanup = (fn: () => unknown) => cleanups.push(fn);

let counter = 0;
export const freshRoom = (prefix = "w") => `${prefix}-${Date.now().toString(36)}-${counter++}`;

/** A persistence over its own fake IndexedDB, shared by the "sessions" (reloads) of one test. */
export function freshIndexedDb(): OutboxPersistence {
  return createIndexedDbPersistence({ indexedDB: new IDBFactory() });
}

/**
 * `persistence` as a page sees it when it goes away (a reload) while
 * deleting a write's record: every delete of a `tx:` record starts and
 * never finishes. `deleting()` says whether one has started.
 */
export function cutTxDeletesShort(persistence: OutboxPersistence): { persistence: OutboxPersistence; deleting(): boolean } {
  let deleting = false;
  return {
    persistence: {
      ...persistence,
      storage: {
        ...persistence.storage,
        delete: (key: string) => {
          if (!key.startsWith("tx:")) return persistence.storage.delete(key);
          deleting = true;
          return new Promise<void>(() => undefined);
        },
      },
    },
    deleting: () => deleting,
  };
}

/**
 * A `ws` class recording sent frames, and able to go deaf: while `deaf` is
 * set, frames from the room are swallowed before the client sees them (the
 * answer to a write is lost in transit).
 */
export interface SentPush {
  clientId: string;
  mutations: Array<{ clientSeq: number; name: string; args: any }>;
}

export function tappedWebSocket(): {
  WebSocket: typeof WebSocket;
  log: FrameLog & { pushes(): SentPush[] };
  control: { deaf: boolean; onPush: undefined | ((frame: string) => void) };
} {
  const log: FrameLog & { pushes(): SentPush[] } = {
    frames: [],
    sent: [],
    rowOps: () => 0,
    resets: () => 0,
    pushes: () => log.sent.filter((frame) => frame.startsWith('{"type":"push"')).map((frame) => JSON.parse(frame)),
  };
  const control = { deaf: false, onPush: undefined as undefined | ((frame: string) => void) };
  class TappedWebSocket extends WebSocket {
    // partysocket removes its listeners from a socket it replaces; the
    // wrapper must go with them, or the replaced socket's last frames (a
    // hello while it closes) still reach the client as if from the new one.
    readonly #wrapped = new Map<unknown, (event: { data: unknown }) => unknown>();
    override addEventListener(type: any, listener: any, options?: any): void {
      if (type === "message") {
        const inner = listener;
        listener = this.#wrapped.get(inner);
        if (!listener) {
          listener = (event: { data: unknown }) => {
            if (control.deaf) return;
            if (typeof event.data === "string") log.frames.push(event.data);
            return typeof inner === "function" ? inner.call(this, event) : inner.handleEvent(event);
          };
          this.#wrapped.set(inner, listener);
        }
      }
      super.addEventListener(type, listener, options);
    }
    override removeEventListener(type: any, listener: any): void {
      const wrapper = type === "message" ? this.#wrapped.get(listener) : undefined;
      if (wrapper) this.#wrapped.delete(listener);
      super.removeEventListener(type, wrapper ?? listener);
    }
    override send(data: any, ...rest: any[]): void {
      if (typeof data === "string") log.sent.push(data);
      (super.send as (...args: unknown[]) => void)(data, ...rest);
      if (typeof data === "string" && data.startsWith('{"type":"push"')) control.onPush?.(data);
    }
  }
  return { WebSocket: TappedWebSocket, log, control };
}

export interface SessionOptions extends OutboxOptions {
  host: string;
  room: string;
  token?: string | (() => string | Promise<string>);
  listId?: string;
}

/** One "page load": a client, the app's collections and its outbox. `close()` is the end of the page. */
export function openSession(options: SessionOptions) {
  const tapped = tappedWebSocket();
  const rejected: WriteRejectedEvent[] = [];
  const storageFailures: StorageFailureEvent[] = [];
  const client = new LunoraClient({
    host: options.host,
    party: "room",
    auth: options.token ?? "user:alice",
    WebSocket: tapped.WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
  });
  const listId = options.listId ?? "L";
  const db = defineCollections(
    client,
    {
      items: {
        shape: { name: "itemsByList", args: { listId } },
        shardKey: options.room,
        load: "eager",
        insert: {
          mutation: "items:create",
          optimistic: (input: { listId: string; title: string; rank?: number }, id: string): Item => ({
            id,
            listId: input.listId,
            title: input.title,
            rank: input.rank ?? 0,
          }),
          toArgs: (row: Item) => ({ id: row.id, listId: row.listId, title: row.title, rank: row.rank }),
        },
      },
    },
    {
      ...options,
      onWriteRejected: (event) => {
        rejected.push(event);
        options.onWriteRejected?.(event);
      },
      onStorageFailure: (event) => {
        storageFailures.push(event);
        options.onStorageFailure?.(event);
      },
    },
  );
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    db.executor.dispose();
    db.collections.items.cleanup();
    client.close();
  };
  cleanups.push(close);
  return { client, db, items: db.collections.items as unknown as Collection<Item, string>, log: tapped.log, control: tapped.control, rejected, storageFailures, close };
}

/** The rows of a collection without TanStack's virtual `$` properties. */
export function rowsOf(collection: Collection<any, any, any>): Map<string, Item> {
  return new Map(
    [...collection.state.entries()].map(([key, row]) => [
      String(key),
      Object.fromEntries(Object.entries(row as object).filter(([k]) => !k.startsWith("$"))) as Item,
    ]),
  );
}

/**
 * The fixture room's column writers as optimistic custom mutators for `room`:
 * `items:bump` (rank + 1, a raw `UPDATE` on the server) and `items:rename`
 * (`ctx.db.patch` of the title). Bind the ones a test needs.
 */
export function itemMutators(room: string) {
  return {
    bump: defineMutator<{ id: string }>({
      serverRef: "items:bump",
      room,
      apply: ({ collections }, { id }) => {
        collections.items.update(id, (draft: Item) => {
          draft.rank += 1;
        });
      },
    }),
    rename: defineMutator<{ id: string; title: string }>({
      serverRef: "items:rename",
      room,
      apply: ({ collections }, { id, title }) => {
        collections.items.update(id, (draft: Item) => {
          draft.title = title;
        });
      },
    }),
  };
}

/**
 * A session that wrote `title` and was closed: its identity's writer is in
 * `persistence` from then on, as on any device that has written before.
 */
export async function writeInEarlierSession(options: SessionOptions & { persistence: OutboxPersistence }, title: string): Promise<void> {
  const earlier = openSession(options);
  await earlier.db.actions.items({ listId: "L", title }).transaction.isPersisted.promise;
  earlier.close();
}
