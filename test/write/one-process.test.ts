/**
 * Node and React Native have no Web Locks: outboxes of one process elect a
 * leader per storage over locks of the process (`realmLocks`). Before, every
 * outbox there led: two clients over one storage both handed out the stored
 * writer's next clientSeq, the room answered the second write with the
 * first's stored outcome, and the second write was lost without a word.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { realmLocks } from "../../src/outbox/leadership.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { serverItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";
import { freshIndexedDb, freshRoom, onCleanup, openSession, writeInEarlierSession } from "./helpers.js";

let worker: LocalWorker;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

describe("outboxes of one process", () => {
  test("two clients over one storage: one leads, each write applies once under its own (clientId, clientSeq), and the other leads once the first is closed", async () => {
    const room = freshRoom("one-process");
    const persistence = freshIndexedDb();
    // The stored writer exists already, as after any reload.
    await writeInEarlierSession({ host: worker.host, room, persistence, token: "user:bob" }, "earlier");

    const a = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    const b = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    await Promise.all([a.items.toArrayWhenReady(), b.items.toArrayWhenReady()]);
    const fromA = a.db.actions.items({ listId: "L", title: "from a" });
    const fromB = b.db.actions.items({ listId: "L", title: "from b" });
    await Promise.all([fromA.transaction.isPersisted.promise, fromB.transaction.isPersisted.promise]);

    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["earlier", "from a", "from b"]);
    const sent = [...a.log.pushes(), ...b.log.pushes()].flatMap((push) => push.mutations.map((mutation) => `${push.clientId}:${mutation.clientSeq}`));
    expect(new Set(sent).size).toBe(2);
    expect([a.db.executor.isLeader, b.db.executor.isLeader].filter(Boolean)).toHaveLength(1);

    const [leader, follower] = a.db.executor.isLeader ? [a, b] : [b, a];
    leader.close();
    await waitFor(() => follower.db.executor.isLeader, { message: "the other outbox leads once the leader is closed" });
    const after = follower.db.actions.items({ listId: "L", title: "after" });
    await after.transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["after", "earlier", "from a", "from b"]);
    follower.close();
  });

  test("a write the second outbox made offline outlives both: it is stored as a tab's write, and the next leader sends it", async () => {
    const room = freshRoom("one-process");
    const persistence = freshIndexedDb();
    await writeInEarlierSession({ host: worker.host, room, persistence, token: "user:bob" }, "earlier");
    const proxy = await TcpProxy.start(worker.port);
    onCleanup(() => proxy.stop());
    proxy.setOnline(false);

    const a = openSession({ host: proxy.host, room, persistence, token: "user:bob" });
    const b = openSession({ host: proxy.host, room, persistence, token: "user:bob" });
    await waitFor(() => a.db.executor.isLeader || b.db.executor.isLeader, { message: "one outbox leads" });
    const follower = a.db.executor.isLeader ? b : a;
    const queued = follower.db.actions.items({ listId: "L", title: "queued by the second outbox" });
    queued.transaction.isPersisted.promise.catch(() => undefined);
    await waitFor(async () => (await persistence.storage.keys()).some((key) => key.startsWith("lunora:tab-write:")), { message: "stored as a tab's write" });
    a.close();
    b.close();

    proxy.setOnline(true);
    const next = openSession({ host: proxy.host, room, persistence, token: "user:bob" });
    await waitFor(async () => (await serverItems(worker, room)).some((item) => item.id === queued.id), { message: "the next leader sent it" });
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["earlier", "queued by the second outbox"]);
    await waitFor(async () => !(await persistence.storage.keys()).some((key) => key.startsWith("lunora:tab-write:")), { message: "its record is gone once applied" });
    next.close();
  });

  test("clients over different storages each lead", async () => {
    const room = freshRoom("one-process");
    const a = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: "user:bob" });
    const b = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: "user:bob" });
    await Promise.all([
      a.db.actions.items({ listId: "L", title: "a" }).transaction.isPersisted.promise,
      b.db.actions.items({ listId: "L", title: "b" }).transaction.isPersisted.promise,
    ]);
    expect([a.db.executor.isLeader, b.db.executor.isLeader]).toEqual([true, true]);
    a.close();
    b.close();
  });
});

describe("realmLocks", () => {
  const settled = () => new Promise((resolve) => setTimeout(resolve, 0));

  test("grants in request order, answers null to ifAvailable while held, and releases when the callback's promise settles (also rejected)", async () => {
    const locks = realmLocks();
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = locks.request("x", {}, () => new Promise<void>((resolve) => (releaseFirst = () => resolve())).then(() => order.push("first done")));
    await settled();
    const second = locks.request("x", {}, async () => {
      order.push("second");
      throw new Error("the holder failed");
    });
    const third = locks.request("x", {}, () => order.push("third"));
    expect(await locks.request("x", { ifAvailable: true }, (lock) => lock)).toBeNull();
    // Another name is not held.
    expect(await locks.request("y", { ifAvailable: true }, (lock) => lock)).not.toBeNull();
    expect(order).toEqual([]);
    releaseFirst();
    await first;
    await expect(second).rejects.toThrow("the holder failed");
    await third;
    expect(order).toEqual(["first done", "second", "third"]);
    expect(await locks.request("x", { ifAvailable: true }, (lock) => lock)).not.toBeNull();
  });

  test("an aborted wait leaves the queue with an AbortError and is never granted", async () => {
    const locks = realmLocks();
    let release!: () => void;
    void locks.request("x", {}, () => new Promise<void>((resolve) => (release = resolve)));
    await settled();
    const abort = new AbortController();
    let granted = false;
    const waiting = locks.request("x", { signal: abort.signal }, () => void (granted = true));
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ name: "AbortError" });
    const next = locks.request("x", {}, () => "next");
    release();
    expect(await next).toBe("next");
    expect(granted).toBe(false);
    const early = new AbortController();
    early.abort();
    void locks.request("x", {}, () => new Promise<void>(() => undefined));
    await settled();
    await expect(locks.request("x", { signal: early.signal }, () => undefined)).rejects.toMatchObject({ name: "AbortError" });
    // An already-aborted request leaves nothing behind: a free name stays free.
    await expect(locks.request("z", { signal: early.signal }, () => undefined)).rejects.toMatchObject({ name: "AbortError" });
    expect(await locks.request("z", { ifAvailable: true }, (lock) => lock)).not.toBeNull();
  });
});
