/**
 * Offline reads end to end: LunoraClient + collections + the IndexedDB query
 * cache (fake-indexeddb) against the fixture room in real workerd. A
 * "reload" is a new client, a new cache and new collections over the same
 * IndexedDB database.
 */
import { createCollection, createLiveQueryCollection, type Collection } from "@tanstack/db";
import { openDB } from "idb";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  createInMemoryQueryCache,
  createInMemoryQueryCacheStore,
  createIndexedDbQueryCache,
  lunoraCollectionOptions,
  tokenFingerprint,
  viewCacheKey,
  type LunoraError,
  type QueryCache,
} from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { deleteItem, putItems, roomCall, serverItems, startFixtureRoom, updateItem } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { deadHost } from "../helpers/dead-host.js";
import { countReadWriteTransactions, freshDatabase, newClient, rowsOf, type Item, type TestClient } from "./helpers.js";

let worker: LocalWorker;
let persistDir: string;
const cleanups: Array<() => unknown> = [];
let counter = 0;
const freshRoom = () => `ob-${Date.now().toString(36)}-${counter++}`;

beforeAll(async () => {
  persistDir = await mkdtemp(path.join(tmpdir(), "lunora-offline-"));
  worker = await startFixtureRoom({ persist: persistDir });
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await worker?.stop();
  await rm(persistDir, { recursive: true, force: true });
});

/** Starts the room again over the same storage on the same port (the port was just released: retry). */
async function startAgain(port: number): Promise<LocalWorker> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startFixtureRoom({ persist: persistDir, port });
    } catch (error) {
      if (attempt >= 10) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)));
    }
  }
}

/** `127.0.0.1:PORT` where nothing listens. */

function session(options: { host?: string; token?: string; databaseName: string; cache?: Parameters<typeof createIndexedDbQueryCache>[0] }): TestClient & { cache: QueryCache } {
  const cache = createIndexedDbQueryCache({ databaseName: options.databaseName, ...options.cache });
  const test = newClient({ host: options.host ?? worker.host, token: options.token, queryCache: cache });
  cleanups.push(() => cache.close());
  cleanups.push(() => test.client.close());
  return { ...test, cache };
}

function track<T extends Collection<any, any, any>>(collection: T): T {
  cleanups.push(() => collection.cleanup());
  return collection;
}

const listOf = (s: TestClient, room: string) =>
  track(createCollection(lunoraCollectionOptions({ client: s.client, list: "items", shardKey: room, load: "eager" }).config));
const shapeOf = (s: TestClient, room: string, listId: string) =>
  track(createCollection(lunoraCollectionOptions({ client: s.client, shape: { name: "itemsByList", args: { listId } }, shardKey: room, load: "eager" }).config));

/** Ends a session the way a page unload would, after its cache has been written. */
async function endSession(s: TestClient & { cache: QueryCache }, ...collections: Array<Collection<any, any, any>>): Promise<void> {
  for (const collection of collections) await collection.cleanup();
  s.client.close();
  await s.cache.close();
}

const projected = (item: Item) => ({ id: item.id, listId: item.listId, title: item.title, rank: item.rank });

describe("offline reads", () => {
  test("with the room stopped, a reload renders cached list and shape rows offline; when the room is back only the missed changes arrive", async () => {
    const room = freshRoom();
    const databaseName = freshDatabase();
    await putItems(worker, room, [
      ...["a1", "a2", "a3", "a4", "a5"].map((id) => ({ id, listId: "L", title: id })),
      ...["b1", "b2", "b3"].map((id) => ({ id, listId: "M", title: id })),
    ]);

    // Session 1: online, syncs and caches both views.
    const first = session({ databaseName });
    const list1 = listOf(first, room);
    const shape1 = shapeOf(first, room, "L");
    await waitFor(() => list1.size === 8 && shape1.size === 5, { message: "session 1 synced" });
    const cachedList = rowsOf(list1);
    const cachedShape = rowsOf(shape1);
    await endSession(first, list1, shape1);

    // What the next session misses: changes, a delete, an insert, a row moving into the shape.
    await updateItem(worker, room, { id: "a1", title: "a1 renamed" });
    await deleteItem(worker, room, "a2");
    await putItems(worker, room, { id: "a6", listId: "L", title: "a6" });
    await updateItem(worker, room, { id: "b1", title: "b1 renamed" });
    await updateItem(worker, room, { id: "b2", listId: "L" });
    const server = await serverItems(worker, room);
    const port = worker.port;
    await worker.stop();

    // Session 2: a reload while nothing listens on the room's port.
    const second = session({ databaseName, host: `127.0.0.1:${port}` });
    let socketsWhenListReady = -1;
    const list2 = listOf(second, room);
    list2.onFirstReady(() => (socketsWhenListReady = second.sockets()));
    await list2.toArrayWhenReady();
    const shape2 = shapeOf(second, room, "L");
    await shape2.toArrayWhenReady();
    expect(socketsWhenListReady).toBe(0); // ready from the cache before any socket existed
    expect(rowsOf(list2)).toEqual(cachedList);
    expect(rowsOf(shape2)).toEqual(cachedShape);
    await waitFor(() => second.client.status === "offline", { message: "status offline" });
    expect(list2.utils.isAuthoritative()).toBe(false);
    expect(shape2.utils.isAuthoritative()).toBe(false);
    expect(list2.utils.lastSyncedAt()).toBeTypeOf("number");
    expect(second.log.frames).toEqual([]);

    // The room comes back on the same port, with the same storage.
    worker = await startAgain(port);
    await waitFor(() => list2.utils.isAuthoritative() && shape2.utils.isAuthoritative(), { message: "resumed", timeoutMs: 30_000 });
    expect(second.log.resets()).toBe(0); // no snapshot
    // list: a1, a2 (del), a6, b1, b2 — shape L: a1, a2 (del), a6, b2 (entered).
    expect(second.log.rowOps()).toBe(9);
    expect(rowsOf(list2)).toEqual(new Map(server.map((item) => [item.id, item as unknown as Record<string, unknown>])));
    expect(rowsOf(shape2)).toEqual(new Map(server.filter((item) => item.listId === "L").map((item) => [item.id, projected(item)])));
  });

  test("a cached view whose cursor the room can no longer serve (trimmed log, then a new epoch) is reset and ends equal to the server", async () => {
    const room = freshRoom();
    const databaseName = freshDatabase();
    await putItems(worker, room, Array.from({ length: 60 }, (_, i) => ({ id: `t-${i}`, listId: "t", title: "x" })));
    const first = session({ databaseName });
    const shape1 = shapeOf(first, room, "t");
    await waitFor(() => shape1.size === 60);
    await endSession(first, shape1);

    // 1. The log is trimmed past the cached cursor.
    await roomCall(worker, room, "/items/churn", { count: 900, keys: 50, listId: "t" });
    await deleteItem(worker, room, "t-59");
    await putItems(worker, room, { id: "t-new", listId: "t", title: "new" });
    await roomCall(worker, room, "/lunora/sweep");
    const second = session({ databaseName });
    const shape2 = shapeOf(second, room, "t");
    let cachedAtReady: boolean | undefined;
    shape2.onFirstReady(() => (cachedAtReady = shape2.has("t-59") && !shape2.has("t-new")));
    await waitFor(() => second.log.resets() > 0 && shape2.utils.isAuthoritative(), { message: "reset after the trim" });
    expect(cachedAtReady).toBe(true); // the stale cached rows showed first
    let server = (await serverItems(worker, room)).filter((item) => item.listId === "t");
    expect(rowsOf(shape2)).toEqual(new Map(server.map((item) => [item.id, projected(item)])));
    await endSession(second, shape2);

    // 2. The room starts a new epoch.
    await roomCall(worker, room, "/lunora/reset-epoch");
    await deleteItem(worker, room, "t-0");
    const third = session({ databaseName });
    const shape3 = shapeOf(third, room, "t");
    let hadDeletedRow: boolean | undefined;
    shape3.onFirstReady(() => (hadDeletedRow = shape3.has("t-0")));
    await waitFor(() => third.log.resets() > 0 && shape3.utils.isAuthoritative(), { message: "reset after the epoch change" });
    expect(hadDeletedRow).toBe(true);
    server = (await serverItems(worker, room)).filter((item) => item.listId === "t");
    expect(rowsOf(shape3)).toEqual(new Map(server.map((item) => [item.id, projected(item)])));
  });

  test("a cache written under identity A is not hydrated under identity B, and is cleared", async () => {
    const room = freshRoom();
    const databaseName = freshDatabase();
    await roomCall(worker, room, "/notes/put", { id: "n1", ownerId: "alice", body: "alice's secret" });
    const alice = session({ databaseName, token: "user:alice" });
    const notes = track(createCollection(lunoraCollectionOptions({ client: alice.client, list: "notes", shardKey: room, load: "eager" }).config));
    await waitFor(() => notes.has("n1"));
    await endSession(alice, notes);
    const stored = async () => {
      const db = await openDB(databaseName);
      try {
        return await db.getAll("viewRecords");
      } finally {
        db.close();
      }
    };
    expect((await stored()).length).toBe(1);

    // Bob on the same device, offline: nothing of Alice's may show.
    const host = await deadHost();
    const bob = session({ databaseName, token: "user:bob", host });
    const bobNotes = track(createCollection(lunoraCollectionOptions({ client: bob.client, list: "notes", shardKey: room, load: "eager" }).config));
    await waitFor(() => bob.sockets() > 0, { message: "bob's collection got past hydration and subscribed" });
    expect(bobNotes.size).toBe(0);
    expect(bobNotes.isReady()).toBe(false); // no cached state, no server: not ready
    expect(bob.cache.stats.identityClears).toBe(1);
    expect(bob.cache.stats.hydrated).toBe(0);
    expect(await stored()).toEqual([]);
    await endSession(bob, bobNotes);

    // Cleared, not just skipped: Alice herself finds nothing any more.
    const aliceAgain = session({ databaseName, token: "user:alice", host });
    const notesAgain = track(createCollection(lunoraCollectionOptions({ client: aliceAgain.client, list: "notes", shardKey: room, load: "eager" }).config));
    await waitFor(() => aliceAgain.sockets() > 0);
    expect(notesAgain.size).toBe(0);
    expect(aliceAgain.cache.stats.hydrated).toBe(0);
  });

  test("rows restored for a view the room now refuses (FORBIDDEN) are dropped from the collection and the cache", async () => {
    const room = freshRoom();
    // Alice's cache holds a view that the room no longer lets her read (as if
    // her access was revoked after it was cached): plant it directly.
    const store = createInMemoryQueryCacheStore();
    const planted = createInMemoryQueryCache({ store });
    planted.attach(() => tokenFingerprint("user:alice"));
    const key = viewCacheKey("room", room, { shape: "ownerOnly" });
    planted.schedule(key, () => ({ cursor: { seq: 1, epoch: "old" }, rows: [["x1", { id: "x1", listId: "x", title: "revoked", rank: 0, secret: 0 }]] }));
    await planted.close();
    expect(store.records.size).toBe(1);

    const cache = createInMemoryQueryCache({ store });
    const s = newClient({ host: worker.host, queryCache: cache });
    cleanups.push(() => s.client.close());
    const errors: LunoraError[] = [];
    const denied = track(
      createCollection(lunoraCollectionOptions({ client: s.client, shape: { name: "ownerOnly" }, shardKey: room, load: "eager", onError: (e) => errors.push(e) }).config),
    );
    let restored: boolean | undefined;
    denied.onFirstReady(() => (restored = denied.has("x1")));
    await waitFor(() => errors.length > 0, { message: "FORBIDDEN arrived" });
    expect(restored).toBe(true);
    expect(errors[0].code).toBe("FORBIDDEN");
    expect(denied.size).toBe(0);
    await cache.flush();
    expect(store.records.size).toBe(0);
  });

  test("a burst of pokes over two views is written as one IndexedDB transaction", async () => {
    const room = freshRoom();
    const databaseName = freshDatabase();
    // The debounce outlasts the burst by far, so nothing here depends on timing.
    const s = session({ databaseName, cache: { debounceMs: 60_000, maxWaitMs: 60_000 } });
    const list = listOf(s, room);
    const shape = shapeOf(s, room, "B");
    await Promise.all([list.toArrayWhenReady(), shape.toArrayWhenReady()]);
    await s.cache.flush();
    const writtenBefore = s.cache.stats.written;
    const transactions = countReadWriteTransactions();
    cleanups.push(() => transactions.restore());
    const pokesBefore = s.log.frames.filter((frame) => /^\{"type":"poke(End)?"/.test(frame)).length;
    for (let i = 0; i < 30; i++) await putItems(worker, room, { id: `burst-${i}`, listId: "B", title: `${i}` });
    await waitFor(() => list.size === 30 && shape.size === 30, { message: "burst synced" });
    const pokes = s.log.frames.filter((frame) => /^\{"type":"poke(End)?"/.test(frame)).length - pokesBefore;
    expect(pokes).toBeGreaterThanOrEqual(30);
    expect(transactions.count()).toBe(0);
    await s.cache.flush();
    expect(transactions.count()).toBe(1);
    expect(s.cache.stats.written - writtenBefore).toBe(2); // both views, in that one transaction

    // And the timer writes by itself when the debounce is short.
    const t = session({ databaseName: freshDatabase(), cache: { debounceMs: 20, maxWaitMs: 100 } });
    const tList = listOf(t, room);
    await waitFor(() => tList.size === 30);
    await waitFor(() => t.cache.stats.flushes >= 1, { message: "debounced flush ran" });
  });

  test("measure: construction to first query result with 10,000 cached rows", async () => {
    const room = freshRoom();
    const databaseName = freshDatabase();
    for (let chunk = 0; chunk < 10; chunk++) {
      await putItems(worker, room, Array.from({ length: 1_000 }, (_, i) => ({ id: `m-${chunk * 1_000 + i}`, listId: "m", title: `row ${chunk * 1_000 + i}` })));
    }
    const first = session({ databaseName });
    const list1 = listOf(first, room);
    await waitFor(() => list1.size === 10_000, { timeoutMs: 60_000 });
    await endSession(first, list1);

    const host = await deadHost(); // measure the cache alone, not the network
    const started = performance.now();
    const second = session({ databaseName, host });
    const list2 = listOf(second, room);
    let readyAt = 0;
    list2.onFirstReady(() => (readyAt = performance.now()));
    const query = track(createLiveQueryCollection((q) => q.from({ item: list2 })));
    const rows = await query.toArrayWhenReady();
    const elapsed = performance.now() - started;
    expect(rows.length).toBe(10_000);
    expect(second.sockets()).toBeLessThanOrEqual(1);
    console.log(
      `[measure] 10,000 cached rows: construction → collection ready ${(readyAt - started).toFixed(1)} ms, → first live-query result ${elapsed.toFixed(1)} ms` +
        ` (fake-indexeddb, Node ${process.version}; entry ${(second.cache.stats.hydrated === 1 ? "hydrated" : "NOT hydrated")})`,
    );
  });
});
