/**
 * The query cache's own rules, on both storages: LRU caps by entries and by
 * bytes, identity gating, and what it does with entries it cannot trust.
 */
import "fake-indexeddb/auto";
import { openDB } from "idb";
import { describe, expect, test } from "vitest";
import {
  createInMemoryQueryCache,
  createInMemoryQueryCacheStore,
  createIndexedDbQueryCache,
  type QueryCache,
  type QueryCacheOptions,
  type ViewSnapshot,
} from "../../src/index.js";
import { freshDatabase } from "./helpers.js";

const snapshot = (seq: number, rows: number, width = 10): ViewSnapshot => ({
  cursor: { seq, epoch: "e1" },
  rows: Array.from({ length: rows }, (_, i) => [`k${i}`, { id: `k${i}`, text: "x".repeat(width) }]),
});

type Factory = (options: QueryCacheOptions, shared: unknown) => QueryCache;
const storages: Array<[string, () => Factory]> = [
  [
    "in memory",
    () => {
      const store = createInMemoryQueryCacheStore();
      return (options) => createInMemoryQueryCache({ ...options, store });
    },
  ],
  [
    "IndexedDB",
    () => {
      const databaseName = freshDatabase();
      return (options) => createIndexedDbQueryCache({ ...options, databaseName });
    },
  ],
];

/** A cache bound to a fixed identity, as a client would bind it. */
function open(factory: Factory, identity: string | (() => string), options: QueryCacheOptions = {}): QueryCache {
  const cache = factory({ debounceMs: 60_000, maxWaitMs: 60_000, ...options }, undefined);
  cache.attach(async () => (typeof identity === "function" ? identity() : identity));
  return cache;
}

async function write(cache: QueryCache, key: string, view: ViewSnapshot): Promise<void> {
  cache.schedule(key, () => view);
  await cache.flush();
}

describe.each(storages)("query cache (%s)", (_name, makeFactory) => {
  test("keeps at most maxEntries views, evicting the least recently used", async () => {
    const factory = makeFactory();
    const cache = open(factory, "alice", { maxEntries: 3 });
    for (const key of ["v1", "v2", "v3"]) await write(cache, key, snapshot(1, 2));
    expect(await cache.read("v1")).toBeDefined(); // v1 is now the most recently used
    await write(cache, "v4", snapshot(1, 2)); // evicts v2
    await write(cache, "v5", snapshot(1, 2)); // evicts v3
    expect(cache.stats.evicted).toBe(2);
    await cache.close();

    // What survives is on storage, not just in memory.
    const reloaded = open(factory, "alice", { maxEntries: 3 });
    const present = [];
    for (const key of ["v1", "v2", "v3", "v4", "v5"]) if (await reloaded.read(key)) present.push(key);
    expect(present).toEqual(["v1", "v4", "v5"]);
    await reloaded.close();
  });

  test("keeps at most maxBytes, and does not cache a view larger than that", async () => {
    const factory = makeFactory();
    const one = JSON.stringify({ key: "v1", identity: "alice", serverCursor: 1, epoch: "e1", ts: Date.now(), rows: snapshot(1, 20, 100).rows }).length;
    const cache = open(factory, "alice", { maxBytes: Math.floor(one * 2.5) });
    await write(cache, "v1", snapshot(1, 20, 100));
    await write(cache, "v2", snapshot(1, 20, 100));
    expect(cache.stats.evicted).toBe(0);
    await write(cache, "v3", snapshot(1, 20, 100)); // three do not fit: v1 goes
    expect(cache.stats.evicted).toBe(1);
    await write(cache, "huge", snapshot(1, 200, 100)); // larger than the whole cache
    expect(await cache.read("huge")).toBeUndefined();
    expect(await cache.read("v1")).toBeUndefined();
    expect((await cache.read("v2"))?.rows).toHaveLength(20);
    expect((await cache.read("v3"))?.rows).toHaveLength(20);
    await cache.close();
  });

  test("entries of another identity are never read and the whole cache is cleared", async () => {
    const factory = makeFactory();
    const alice = open(factory, "alice");
    await write(alice, "v1", snapshot(7, 3));
    await write(alice, "v2", snapshot(7, 3));
    await alice.close();

    const bob = open(factory, "bob");
    expect(await bob.read("v1")).toBeUndefined();
    expect(bob.stats.identityClears).toBe(1);
    await bob.close();

    const aliceAgain = open(factory, "alice");
    expect(await aliceAgain.read("v1")).toBeUndefined();
    expect(await aliceAgain.read("v2")).toBeUndefined();
    await aliceAgain.close();
  });

  test("an identity change mid-session clears the cache instead of writing under the new identity", async () => {
    const factory = makeFactory();
    let who = "alice";
    const cache = open(factory, () => who);
    await write(cache, "v1", snapshot(1, 3));
    who = "bob"; // the token changed hands (sign-out, sign-in)
    await write(cache, "v2", snapshot(2, 3)); // this batch may hold Alice's rows: dropped
    expect(cache.stats.identityClears).toBe(1);
    expect(await cache.read("v1")).toBeUndefined();
    expect(await cache.read("v2")).toBeUndefined();
    await write(cache, "v3", snapshot(3, 3)); // now written as Bob's
    expect((await cache.read("v3"))?.identity).toBe("bob");
    await cache.close();
  });

  test("a view re-read before its batch is written comes from memory (a quick re-scope)", async () => {
    const factory = makeFactory();
    const cache = open(factory, "alice");
    let rows = 2;
    cache.schedule("v1", () => snapshot(5, rows));
    cache.settle("v1"); // its collection moved on: the state is fixed now
    rows = 99;
    expect((await cache.read("v1"))?.rows).toHaveLength(2);
    await cache.flush();
    expect((await cache.read("v1"))?.serverCursor).toBe(5);
    await cache.close();
  });
});

test("an entry that is not a valid view is never hydrated, and is removed", async () => {
  const databaseName = freshDatabase();
  const cache = createIndexedDbQueryCache({ databaseName, debounceMs: 60_000 });
  cache.attach(async () => "alice");
  await write(cache, "v1", snapshot(1, 2));
  await cache.close();
  const db = await openDB(databaseName);
  await db.put("views", { key: "v1", json: '{"key":"v1","identity":"alice","rows":"not rows"}' });
  db.close();

  const reloaded = createIndexedDbQueryCache({ databaseName, debounceMs: 60_000 });
  reloaded.attach(async () => "alice");
  expect(await reloaded.read("v1")).toBeUndefined();
  await reloaded.flush();
  const check = await openDB(databaseName);
  expect(await check.getAll("views")).toEqual([]);
  check.close();
  await reloaded.close();
});

test("options are validated with a coded error", () => {
  expect(() => createInMemoryQueryCache({ maxEntries: 0 })).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
  expect(() => createInMemoryQueryCache({ debounceMs: Number.NaN })).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
});
