import { createCollection } from "@tanstack/db";
import WebSocket from "ws";
import { createInMemoryPersistence, defineCollections, LunoraClient } from "../../src/index.js";

export interface WriterOptions {
  host: string;
  room: string;
  listId: string;
  token: string;
  pipeline?: boolean;
  reconnect?: { minDelayMs: number; maxDelayMs: number };
}

/**
 * A client that writes `items` through `defineCollections` (durable outbox,
 * optimistic row) into the bench room's `itemsByList` shape. The outbox is
 * in memory: Node has no IndexedDB, and W2/W3 are about the network path.
 */
export function startWriter(options: WriterOptions) {
  const client = new LunoraClient({
    host: options.host,
    party: "room",
    auth: options.token,
    WebSocket,
    pingIntervalMs: 0,
    reconnect: options.reconnect ?? { minDelayMs: 20, maxDelayMs: 200 },
    persistence: createInMemoryPersistence(),
  });
  const db = defineCollections(
    client,
    {
      items: {
        shape: { name: "itemsByList", args: { listId: options.listId } },
        shardKey: options.room,
        load: "eager",
        insert: {
          mutation: "items:create",
          optimistic: (input: { title: string }, id: string) => ({ id, listId: options.listId, title: input.title, rank: 0 }),
          toArgs: (row: { id: string; listId: string; title: string }) => ({ id: row.id, listId: row.listId, title: row.title }),
        },
      },
    },
    {
      pipeline: options.pipeline ?? true,
      onWriteRejected: ({ code, error }) => console.warn(`  write rejected: ${code} ${error.message}`),
    },
  );
  const insert = (title: string) => (db.actions as any).items({ title }) as { id: string; transaction: { isPersisted: { promise: Promise<unknown> } } };
  return {
    client,
    db,
    insert,
    close: async () => {
      await db.collections.items.cleanup();
      db.executor.dispose();
      client.close();
    },
  };
}

/** A reader: a `LunoraClient` with one `itemsByList` collection, and when each key first appeared in it. */
export async function startReader(host: string, room: string, listId: string, token: string) {
  const { lunoraCollectionOptions } = await import("../../src/index.js");
  const client = new LunoraClient({ host, party: "room", auth: token, WebSocket, pingIntervalMs: 0 });
  const collection = createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId } }, shardKey: room, load: "eager" }).config);
  const seenAt = new Map<string, number>();
  collection.subscribeChanges((changes) => {
    const now = performance.now();
    for (const change of changes) if (change.type === "insert" && !seenAt.has(String(change.key))) seenAt.set(String(change.key), now);
  });
  await collection.toArrayWhenReady();
  return {
    client,
    collection,
    seenAt,
    close: async () => {
      await collection.cleanup();
      client.close();
    },
  };
}
