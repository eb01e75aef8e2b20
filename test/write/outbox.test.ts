/**
 * The write path end to end: defineCollections / bindMutators + the durable
 * outbox (fake IndexedDB) + LunoraClient against the fixture room in real
 * workerd. A "reload" is a new client + collections + outbox over the same
 * IndexedDB; "offline" is a TCP proxy that cuts the socket.
 */
import { randomUUID } from "node:crypto";
import { IDBObjectStore } from "fake-indexeddb";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { bindMutators, defineMutator } from "../../src/mutators/index.js";
import { MAX_PUSH_FRAME_BYTES, manualOnlineDetector } from "../../src/outbox/index.js";
import type { LunoraClient } from "../../src/index.js";
import { tokenFingerprint } from "../../src/client/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, roomCall, serverItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";
import { cutTxDeletesShort, freshIndexedDb, freshRoom, itemMutators, onCleanup, openSession, rowsOf, type Item } from "./helpers.js";

let worker: LocalWorker;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

async function offlineProxy(): Promise<TcpProxy> {
  const proxy = await TcpProxy.start(worker.port);
  proxy.setOnline(false);
  onCleanup(() => proxy.stop());
  return proxy;
}

/** Records in the durable queue of a session. */
async function queued(session: ReturnType<typeof openSession>): Promise<number> {
  await session.db.executor.waitForInit();
  return (await session.db.executor.offlineExecutor!.peekOutbox()).length;
}

const bumps = (room: string) => roomCall<string[]>(worker, room, "/bumps");

/** `items:bump` as a custom mutator: the optimistic rank + 1, pushed to the room of the test. */
function bumpMutators(client: LunoraClient, collections: Record<string, any>, room: string) {
  return bindMutators(
    client,
    { collections },
    {
      bump: itemMutators(room).bump,
      addNote: defineMutator<{ id: string; body: string }>({
        serverRef: "notes:add",
        room,
        apply: () => {
          // Notes are not synced by this client: nothing to show optimistically.
        },
      }),
    },
  );
}


/** Write metadata as this version stores it with a queued write; `overrides` change (or blank) its fields. */
const writeMeta = (overrides: Record<string, unknown>) => ({
  v: 1,
  kind: "insert",
  name: "items:create",
  args: { id: randomUUID(), listId: "L", title: "never sent" },
  party: "room",
  clientId: "c-old",
  clientSeq: 1,
  ...overrides,
});

/** A `tx:` record as the library stores it; `fields` replace its own fields (`metadata`, `mutationFnName`, …). */
const storedRecord = (id: string, fields: Record<string, unknown>) =>
  JSON.stringify({ id, mutationFnName: "lunora:push", mutations: [], keys: [], idempotencyKey: `k-${id}`, createdAt: new Date(0).toISOString(), retryCount: 0, nextAttemptAt: 0, version: 1, ...fields });

/** `tx:` records of `room` this outbox cannot send: another function, no or newer metadata, unassigned, hostile ids (key → stored value). */
function unreadableRecords(room: string): Array<[string, string]> {
  const meta = writeMeta({ room, identity: "someone" });
  const record = storedRecord;
  return [
    ["tx:unknown-function", record("unknown-function", { mutationFnName: "another-library:push", metadata: { lunora: meta } })],
    ["tx:no-metadata", record("no-metadata", {})],
    ["tx:newer-version", record("newer-version", { metadata: { lunora: { ...meta, v: 2 } } })],
    ["tx:unassigned", record("unassigned", { metadata: { lunora: { ...meta, clientId: undefined, clientSeq: undefined } } })],
    ["tx:seq-as-string", record("seq-as-string", { metadata: { lunora: { ...meta, clientSeq: "1" } } })],
    ["tx:__proto__", record("__proto__", { metadata: JSON.parse(`{"__proto__":${JSON.stringify({ lunora: meta })}}`) })],
    ["tx:constructor", record("constructor", { metadata: { constructor: { lunora: meta } } })],
  ];
}

/**
 * Queues one real write offline, plants the records `bad` returns (key →
 * stored value) beside it, and reloads: each bad record is reported once as
 * UNREADABLE_WRITE, the real write still reaches the room, no `tx:` record stays.
 */
async function expectReportedBesideQueuedWrite(bad: (room: string, identity: string) => Array<[string, string]>): Promise<void> {
  const room = freshRoom();
  const persistence = freshIndexedDb();
  const proxy = await offlineProxy();
  const first = openSession({ host: proxy.host, room, persistence });
  const { id } = first.db.actions.items({ listId: "L", title: "queued next to a bad record" });
  await waitFor(async () => (await queued(first)) === 1, { message: "write persisted in the outbox" });
  first.close();

  const records = bad(room, await tokenFingerprint("user:alice"));
  for (const [key, value] of records) await persistence.storage.set(key, value);

  const second = openSession({ host: worker.host, room, persistence });
  await waitFor(() => second.storageFailures.length >= records.length, { message: "every bad record reported" });
  expect(second.storageFailures.map((event) => [event.code, event.data?.key]).sort()).toEqual(records.map(([key]) => ["UNREADABLE_WRITE", key]).sort());
  await waitFor(() => second.client.pendingWrites === 0, { message: "the queued write went out" });
  expect((await serverItems(worker, room)).map((item) => item.id)).toEqual([id]);
  expect((await persistence.storage.keys()).filter((key) => key.startsWith("tx:"))).toEqual([]);
}

describe("durability and exactly once", () => {
  test("a write made offline survives a reload and, on reconnect, runs on the server exactly once; the row settles", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const proxy = await offlineProxy();
    const first = openSession({ host: proxy.host, room, persistence });
    const { id } = first.db.actions.items({ listId: "L", title: "written offline" });
    expect(rowsOf(first.items).get(id)).toEqual({ id, listId: "L", title: "written offline", rank: 0 });
    await waitFor(async () => (await queued(first)) === 1, { message: "write persisted in the outbox" });
    const clientId = first.db.executor.clientId;
    first.close();

    // The reload: a new page over the same IndexedDB, online this time.
    const second = openSession({ host: worker.host, room, persistence });
    await waitFor(() => second.items.has(id), { message: "the queued write's row is shown again after the reload" });
    await waitFor(() => second.client.pendingWrites === 0 && second.items.utils.isAuthoritative(), { message: "write settled" });
    expect(await serverItems(worker, room)).toEqual([{ id, listId: "L", title: "written offline", rank: 0, secret: 0 }]);
    expect(rowsOf(second.items)).toEqual(new Map([[id, { id, listId: "L", title: "written offline", rank: 0 }]]));
    // Sent once, under the clientId and clientSeq it was persisted with.
    expect(second.log.pushes().map((push) => [push.clientId, push.mutations.map((m) => m.clientSeq)])).toEqual([[clientId, [1]]]);
    expect(second.rejected).toEqual([]);
    expect(await queued(second)).toBe(0);
  });

  test("the socket drops after the room committed a write but before the client saw the answer: the replay is not applied again", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "b", listId: "L", title: "bump me" });
    const proxy = await TcpProxy.start(worker.port);
    onCleanup(() => proxy.stop());
    const session = openSession({ host: proxy.host, room, persistence: freshIndexedDb() });
    const mutate = bumpMutators(session.client, session.db.collections, room);
    await waitFor(() => session.items.has("b"), { message: "b synced" });

    // Deaf from the moment the push leaves: the room's answer never reaches the client.
    session.control.onPush = () => {
      session.control.deaf = true;
      session.control.onPush = undefined;
    };
    const transaction = mutate.bump({ id: "b" });
    expect(session.items.get("b")?.rank).toBe(1); // optimistic
    await waitFor(async () => (await bumps(room)).length === 1, { message: "the room committed the bump" });
    expect(transaction.state).toBe("persisting");

    proxy.setOnline(false);
    await waitFor(() => session.client.roomStatus(room) === "offline", { message: "socket dropped" });
    session.control.deaf = false;
    proxy.setOnline(true);
    await transaction.isPersisted.promise;

    expect(session.log.pushes().length).toBe(2); // the original and the replay, same clientSeq
    expect(new Set(session.log.pushes().map((push) => JSON.stringify(push.mutations)))).toHaveProperty("size", 1);
    expect(await bumps(room)).toHaveLength(1);
    expect((await serverItems(worker, room)).find((item) => item.id === "b")!.rank).toBe(1);
    await waitFor(() => session.items.get("b")?.rank === 1 && session.client.pendingWrites === 0);
  });

  test("an offline custom mutator survives a reload and runs once", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "b", listId: "L", title: "bump me" });
    const persistence = freshIndexedDb();
    const proxy = await TcpProxy.start(worker.port);
    onCleanup(() => proxy.stop());
    const first = openSession({ host: proxy.host, room, persistence });
    const firstMutate = bumpMutators(first.client, first.db.collections, room);
    await waitFor(() => first.items.has("b"), { message: "b synced" });
    proxy.setOnline(false);
    await waitFor(() => first.client.roomStatus(room) === "offline");
    firstMutate.bump({ id: "b" });
    expect(first.items.get("b")?.rank).toBe(1);
    await waitFor(async () => (await queued(first)) === 1, { message: "mutator persisted" });
    first.close();

    const second = openSession({ host: worker.host, room, persistence });
    bumpMutators(second.client, second.db.collections, room);
    await waitFor(async () => (await bumps(room)).length === 1, { message: "the bump ran after the reload" });
    await waitFor(() => second.client.pendingWrites === 0 && second.items.get("b")?.rank === 1, { message: "settled" });
    // Give a duplicate every chance to show up: a later write of the same client round-trips after it.
    await second.db.actions.items({ listId: "L", title: "later" }).transaction.isPersisted.promise;
    expect(await bumps(room)).toHaveLength(1);
    expect((await serverItems(worker, room)).find((item) => item.id === "b")!.rank).toBe(1);
  });
});

describe("pipelined replay", () => {
  async function drain(pipeline: boolean, count: number) {
    const room = freshRoom("drain");
    const proxy = await offlineProxy();
    const session = openSession({ host: proxy.host, room, persistence: freshIndexedDb(), pipeline });
    await session.db.executor.waitForInit();
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(session.db.actions.items({ listId: "L", title: `w${i}`, rank: i }).id);
    expect(session.items.size).toBe(count);
    await waitFor(async () => (await queued(session)) === count, { message: `${count} writes persisted`, timeoutMs: 60_000 });

    let pushedAt = 0;
    session.control.onPush = () => {
      pushedAt ||= performance.now();
    };
    const started = performance.now();
    proxy.setOnline(true);
    await waitFor(() => session.client.pendingWrites === 0, { message: "queue drained", timeoutMs: 120_000 });
    const elapsed = performance.now() - started;
    console.log(
      `[bench] ${count} queued writes drained in ${elapsed.toFixed(0)} ms from reconnect ` +
        `(${pipeline ? "pipelined" : "one write per round trip"}, ${session.log.pushes().length} push frames, first push after ${(pushedAt - started).toFixed(0)} ms)`,
    );
    return { room, session, ids };
  }

  test("1,000 writes queued offline drain on reconnect in one pipelined batch, applied in client order", async () => {
    const { room, session, ids } = await drain(true, 1_000);
    const pushes = session.log.pushes();
    expect(pushes).toHaveLength(1); // one round trip
    expect(pushes[0].mutations.map((m) => m.clientSeq)).toEqual(ids.map((_, i) => i + 1));
    // The room applied them in client order: its change log lists the inserts in the order they were made.
    const log = await roomCall<Array<{ id: string; op: string }>>(worker, room, "/log");
    expect(log.map((entry) => entry.id)).toEqual(ids);
    await waitFor(() => session.items.size === 1_000 && session.items.utils.isAuthoritative());
    expect(rowsOf(session.items).get(ids[999])).toEqual({ id: ids[999], listId: "L", title: "w999", rank: 999 });
    expect(session.rejected).toEqual([]);
  });

  test("without pipelining the same drain costs one round trip per write", async () => {
    const { room, session, ids } = await drain(false, 200);
    expect(session.log.pushes()).toHaveLength(200);
    expect((await roomCall<Array<{ id: string }>>(worker, room, "/log")).map((entry) => entry.id)).toEqual(ids);
  });
});

describe("rejections", () => {
  test("a rejected write rolls back, fires onWriteRejected once with its code, and writes queued behind it still apply", async () => {
    const room = freshRoom();
    const proxy = await offlineProxy();
    let rowSeenByCallback: Item | undefined;
    const session = openSession({
      host: proxy.host,
      room,
      persistence: freshIndexedDb(),
      onWriteRejected: (event) => {
        rowSeenByCallback = session.items.get(String(event.row?.id));
      },
    });
    const before = session.db.actions.items({ listId: "L", title: "before" });
    const bad = session.db.actions.items({ listId: "L", title: "" }); // the room rejects an empty title
    const after = session.db.actions.items({ listId: "L", title: "after" });
    expect(session.items.size).toBe(3);
    await waitFor(async () => (await queued(session)) === 3);
    proxy.setOnline(true);

    await expect(bad.transaction.isPersisted.promise).rejects.toMatchObject({ name: "LunoraError", code: "INVALID_ARGS" });
    await after.transaction.isPersisted.promise;
    await before.transaction.isPersisted.promise;
    await waitFor(() => session.client.pendingWrites === 0 && session.items.size === 2, { message: "settled" });

    expect(session.rejected).toHaveLength(1);
    expect(session.rejected[0]).toMatchObject({ collection: "items", code: "INVALID_ARGS", mutator: "items:create", row: { id: bad.id, title: "" } });
    expect(rowSeenByCallback).toMatchObject({ id: bad.id }); // reported before the rollback
    expect(session.items.has(bad.id)).toBe(false);
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["after", "before"]);
    expect([...rowsOf(session.items).keys()].sort()).toEqual([before.id, after.id].sort());
  });

  test("a write rejected after a reload, which nobody awaits, is still reported once and rolled back", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const proxy = await offlineProxy();
    const first = openSession({ host: proxy.host, room, persistence });
    const bad = first.db.actions.items({ listId: "L", title: "" });
    await waitFor(async () => (await queued(first)) === 1);
    first.close();

    const second = openSession({ host: worker.host, room, persistence });
    await waitFor(() => second.rejected.length === 1, { message: "rejection reported" });
    expect(second.rejected[0]).toMatchObject({ code: "INVALID_ARGS", row: { id: bad.id } });
    await waitFor(() => second.client.pendingWrites === 0 && !second.items.has(bad.id), { message: "rolled back" });
    expect(second.rejected).toHaveLength(1);
  });

  // Reported first and deleted after, a rejected write whose page reloaded
  // in between was restored (its rows back on screen), replayed, answered
  // from the room's stored outcome and reported a second time.
  test("a rejected write is reported once, also when a reload cut its record's delete short", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const cutShort = cutTxDeletesShort(persistence);
    const first = openSession({ host: worker.host, room, persistence: cutShort.persistence });
    await first.db.executor.waitForInit();
    const bad = first.db.actions.items({ listId: "L", title: "" });
    await waitFor(() => cutShort.deleting(), { message: "the rejected write's record is being deleted" });
    first.close(); // the page goes away before the delete completed

    const second = openSession({ host: worker.host, room, persistence });
    await waitFor(async () => (await queued(second)) === 0, { message: "record gone" });
    await waitFor(() => first.rejected.length + second.rejected.length > 0, { message: "reported" });
    await waitFor(() => second.client.pendingWrites === 0 && !second.items.has(bad.id), { message: "rolled back" });
    const reports = [...first.rejected, ...second.rejected];
    expect(reports.map((event) => [event.code, event.row?.id])).toEqual([["INVALID_ARGS", bad.id]]);
  });
});

describe("settling", () => {
  test("no flicker: the optimistic row is never deleted and re-inserted when it settles", async () => {
    const room = freshRoom();
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb() });
    await session.items.toArrayWhenReady();
    const events: Array<{ type: string; key: unknown }> = [];
    const subscription = session.items.subscribeChanges((changes) => {
      for (const change of changes) events.push({ type: change.type, key: change.key });
    });
    onCleanup(() => subscription.unsubscribe());

    const writes = Array.from({ length: 20 }, (_, i) => session.db.actions.items({ listId: "L", title: `t${i}`, rank: i }));
    await Promise.all(writes.map((write) => write.transaction.isPersisted.promise));
    await waitFor(() => session.client.pendingWrites === 0);
    // The server rows (identical to the optimistic ones) have been applied by now.
    await waitFor(() => session.items.utils.isAuthoritative() && session.items.utils.cursor()!.seq >= 20);

    for (const { id } of writes) {
      const mine = events.filter((event) => event.key === id).map((event) => event.type);
      expect(mine[0]).toBe("insert");
      expect(mine).not.toContain("delete");
      expect(mine.filter((type) => type === "insert")).toHaveLength(1);
    }
    expect(session.items.size).toBe(20);
  });

  test("a write touching rows no subscription of its client sees still settles", async () => {
    const room = freshRoom();
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb() });
    const mutate = bumpMutators(session.client, session.db.collections, room);
    const id = randomUUID();
    const transaction = mutate.addNote({ id, body: "only alice reads this" });
    await transaction.isPersisted.promise;
    expect(transaction.state).toBe("completed");
    const log = await roomCall<Array<{ table: string; id: string }>>(worker, room, "/log");
    expect(log).toEqual([expect.objectContaining({ table: "notes", id })]);
    await waitFor(() => session.client.pendingWrites === 0);
  });
});

describe("transient failures", () => {
  test("a transient failure is retried and never reported; after maxTransientFailures the write is parked and stops holding its collection", async () => {
    const room = freshRoom();
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), maxTransientFailures: 1 });
    const mutate = bindMutators(
      session.client,
      { collections: session.db.collections },
      {
        flaky: defineMutator<{ id: string; listId: string; title: string }>({
          serverRef: "items:flaky",
          room,
          apply: ({ collections }, args) => {
            collections.items.insert({ ...args, rank: 0 });
          },
        }),
      },
    );
    await session.items.toArrayWhenReady();
    await roomCall(worker, room, "/faults", { flaky: true });
    onCleanup(() => roomCall(worker, room, "/faults", { flaky: false }));

    const id = randomUUID();
    const transaction = mutate.flaky({ id, listId: "L", title: "flaky" });
    await transaction.isPersisted.promise; // parked after its first INTERNAL: durable, still queued
    expect(session.items.get(id)).toMatchObject({ title: "flaky" }); // its row stays
    expect(session.client.pendingWrites).toBe(1);
    // The collection is no longer held by the failing write: another writer's row shows up.
    await putItems(worker, room, { id: "other", listId: "L", title: "from elsewhere" });
    await waitFor(() => session.items.has("other"), { message: "a poke to the collection applied while the write keeps failing" });
    expect(await serverItems(worker, room)).toHaveLength(1);

    await roomCall(worker, room, "/faults", { flaky: false });
    await waitFor(() => session.client.pendingWrites === 0, { message: "retried with backoff until applied", timeoutMs: 30_000 });
    expect((await serverItems(worker, room)).map((item) => item.id).sort()).toEqual([id, "other"].sort());
    await waitFor(() => session.items.get(id)?.title === "flaky" && session.items.utils.cursor()!.seq >= 2);
    expect(session.rejected).toEqual([]);
  });
});

/**
 * Leader election between "tabs" of one process, standing in for the Web
 * Locks election of a browser: the first tab to ask leads; when it releases,
 * the next waiting tab is told it leads now.
 */
function tabElection() {
  let leader: object | undefined;
  const waiting: Array<{ tab: object; notify: (isLeader: boolean) => void }> = [];
  return () => {
    const tab = {};
    const callbacks = new Set<(isLeader: boolean) => void>();
    const notify = (isLeader: boolean) => callbacks.forEach((callback) => callback(isLeader));
    return {
      requestLeadership: async () => {
        if (leader === undefined || leader === tab) {
          leader = tab;
          return true;
        }
        waiting.push({ tab, notify });
        return false;
      },
      releaseLeadership: () => {
        if (leader !== tab) return;
        leader = undefined;
        const next = waiting.shift();
        if (next) {
          leader = next.tab;
          next.notify(true);
        }
      },
      isLeader: () => leader === tab,
      onLeadershipChange: (callback: (isLeader: boolean) => void) => {
        callbacks.add(callback);
        return () => callbacks.delete(callback);
      },
    };
  };
}

describe("tabs", () => {
  test("a leader tab closes with writes queued offline: the follower tab becomes leader and runs them exactly once", async () => {
    const room = freshRoom("tabs");
    const persistence = freshIndexedDb();
    const newTab = tabElection();
    const proxy = await offlineProxy();
    const leaderships: boolean[] = [];
    const a = openSession({ host: proxy.host, room, persistence, leaderElection: newTab() });
    await a.db.executor.waitForInit();
    expect(a.db.executor.isLeader).toBe(true);
    const ids = [a.db.actions.items({ listId: "L", title: "from tab A 1" }).id, a.db.actions.items({ listId: "L", title: "from tab A 2" }).id];
    await waitFor(async () => (await queued(a)) === 2, { message: "tab A's writes stored" });

    // Tab B is open too, online, and follows.
    const b = openSession({ host: worker.host, room, persistence, leaderElection: newTab(), onLeadershipChange: (isLeader) => leaderships.push(isLeader) });
    await b.db.executor.waitForInit();
    expect(b.db.executor.isLeader).toBe(false);

    a.close(); // tab A goes away without ever reconnecting
    await waitFor(() => b.db.executor.isLeader, { message: "tab B leads" });
    await waitFor(async () => (await serverItems(worker, room)).length === 2, { message: "tab A's writes ran" });
    await waitFor(async () => (await queued(b)) === 0, { message: "the shared queue is empty" });
    expect((await serverItems(worker, room)).map((item) => item.id).sort()).toEqual([...ids].sort());
    expect(leaderships).toContain(true);
    // Each write went out under tab A's clientId and clientSeq, once.
    const pushed = b.log.pushes().flatMap((push) => push.mutations.map((m) => `${push.clientId}:${m.clientSeq}`));
    expect(new Set(pushed).size).toBe(pushed.length);
    await waitFor(() => b.items.has(ids[0]) && b.items.has(ids[1]), { message: "tab B shows them" });
  });
});

describe("counting what is undelivered", () => {
  test("a write queued in one tab is counted in every tab of its identity until it is delivered, and in no tab of another identity", async () => {
    const room = freshRoom("count");
    const persistence = freshIndexedDb();
    const newTab = tabElection();
    const proxy = await offlineProxy();
    const a = openSession({ host: proxy.host, room, persistence, leaderElection: newTab() });
    await a.db.executor.waitForInit();
    const b = openSession({ host: worker.host, room, persistence, leaderElection: newTab() });
    const other = openSession({ host: worker.host, room, persistence, leaderElection: newTab(), token: "user:bob" });
    await Promise.all([b.db.executor.waitForInit(), other.db.executor.waitForInit()]);
    expect(b.client.pendingWrites).toBe(0);

    // Tab A is offline: its write waits in the shared storage. Tab B holds
    // nothing in memory, yet must not say "all saved".
    a.db.actions.items({ listId: "L", title: "queued in tab A" });
    await waitFor(() => a.client.pendingWrites === 1 && b.client.pendingWrites === 1, { message: "both tabs count the queued write" });
    expect(other.client.pendingWrites).toBe(0);

    proxy.setOnline(true);
    await waitFor(async () => (await serverItems(worker, room)).length === 1, { message: "delivered" });
    await waitFor(() => a.client.pendingWrites === 0 && b.client.pendingWrites === 0, { message: "every tab back to 0" });
    expect(await queued(b)).toBe(0);
  });
});

describe("the online detector", () => {
  test("while the detector reports offline a write stays queued although the socket is up; going online sends it once", async () => {
    const room = freshRoom("gate");
    const online = manualOnlineDetector(false);
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), onlineDetector: online });
    await session.db.executor.waitForInit();
    await waitFor(() => session.client.roomStatus(room) === "connected", { message: "the room's socket is up" });

    const { id, transaction } = session.db.actions.items({ listId: "L", title: "held by the detector" });
    await session.db.executor.whenStored();
    await waitFor(async () => (await queued(session)) === 1, { message: "stored" });
    // A write made later by another client goes through the same steps
    // (identity, writer counter, push) and reaches this client's socket as a
    // poke: by then the held write would have been pushed, were it not held.
    const other = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: "user:bob" });
    const later = other.db.actions.items({ listId: "L", title: "made later, sent at once" });
    await later.transaction.isPersisted.promise;
    // (Its row is not shown yet: the collection holds sync commits while the held write persists.)
    await waitFor(() => session.log.frames.some((frame) => frame.includes(later.id)), { message: "the later write reached this client's socket" });
    expect(session.log.pushes()).toEqual([]);
    expect((await serverItems(worker, room)).map((item) => item.id)).toEqual([later.id]);

    online.setOnline(true);
    await transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.id).sort()).toEqual([id, later.id].sort());
    expect(session.log.pushes()).toHaveLength(1);
    await waitFor(() => session.client.pendingWrites === 0, { message: "nothing pending" });
  });
});

describe("bounds", () => {
  test("past maxPendingWrites a new write throws QUOTA_EXCEEDED before applying anything; the queued ones still drain", async () => {
    const room = freshRoom("bound");
    const proxy = await offlineProxy();
    const session = openSession({ host: proxy.host, room, persistence: freshIndexedDb(), maxPendingWrites: 3 });
    await session.db.executor.waitForInit();
    for (let i = 0; i < 3; i++) session.db.actions.items({ listId: "L", title: `w${i}` });
    let thrown: unknown;
    try {
      session.db.actions.items({ listId: "L", title: "one too many" });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: "QUOTA_EXCEEDED", data: { maxPendingWrites: 3 } });
    expect(session.items.size).toBe(3);
    proxy.setOnline(true);
    await waitFor(() => session.client.pendingWrites === 0, { message: "queue drained" });
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["w0", "w1", "w2"]);
  });
});

describe("storage and identity", () => {
  test("IndexedDB over quota fires onStorageFailure with a code, and the write still reaches the server while online", async () => {
    const room = freshRoom();
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb() });
    await session.db.executor.waitForInit();
    const put = vi.spyOn(IDBObjectStore.prototype, "put").mockImplementation(() => {
      throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
    });
    onCleanup(() => put.mockRestore());

    const { id, transaction } = session.db.actions.items({ listId: "L", title: "not durable" });
    await transaction.isPersisted.promise;
    expect(put).toHaveBeenCalled();
    expect(session.storageFailures.map((failure) => failure.code)).toEqual(["QUOTA_EXCEEDED"]);
    expect(session.storageFailures[0].message).toMatch(/quota/i);
    expect((await serverItems(worker, room)).map((item) => item.id)).toEqual([id]);
    expect(await queued(session)).toBe(0);
    await waitFor(() => session.client.pendingWrites === 0 && session.items.has(id));
  });

  test("after an identity change nothing queued under the old identity reaches the server, and it is reported", async () => {
    const room = freshRoom();
    const proxy = await offlineProxy();
    let token = "user:alice";
    const session = openSession({ host: proxy.host, room, persistence: freshIndexedDb(), token: () => token });
    await session.db.executor.waitForInit();
    const a = session.db.actions.items({ listId: "L", title: "alice 1" });
    const b = session.db.actions.items({ listId: "L", title: "alice 2" });
    await waitFor(async () => (await queued(session)) === 2);

    token = "user:bob";
    proxy.setOnline(true);
    await waitFor(() => session.rejected.length === 2, { message: "both writes reported" });
    expect(session.rejected.map((event) => [event.code, event.row?.id])).toEqual([
      ["IDENTITY_CHANGED", a.id],
      ["IDENTITY_CHANGED", b.id],
    ]);
    await expect(a.transaction.isPersisted.promise).rejects.toMatchObject({ code: "IDENTITY_CHANGED" });
    await waitFor(() => !session.items.has(a.id) && !session.items.has(b.id), { message: "alice's rows rolled back" });

    // Bob's own write goes through; alice's never went out.
    const mine = session.db.actions.items({ listId: "L", title: "bob's" });
    await mine.transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.id)).toEqual([mine.id]);
    const sentIds = session.log.pushes().flatMap((push) => push.mutations.map((m) => m.args.id));
    expect(sentIds).toEqual([mine.id]);
    expect(await queued(session)).toBe(0);
  });

  /** Alice's page queues one write while offline and closes: its record stays in `persistence`. */
  async function aliceQueuedOffline(room: string) {
    const persistence = freshIndexedDb();
    const proxy = await offlineProxy();
    const first = openSession({ host: proxy.host, room, persistence, token: "user:alice" });
    const a = first.db.actions.items({ listId: "L", title: "alice's" });
    await waitFor(async () => (await queued(first)) === 1);
    first.close();
    return { persistence, a, proxy };
  }

  test("writes queued by identity A are neither shown nor replayed when the page reloads as identity B", async () => {
    const room = freshRoom();
    const { persistence, a } = await aliceQueuedOffline(room);

    const second = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    const shown: unknown[] = [];
    const subscription = second.items.subscribeChanges((changes) => shown.push(...changes.map((change) => change.key)));
    onCleanup(() => subscription.unsubscribe());
    await waitFor(() => second.rejected.length === 1, { message: "reported" });
    expect(second.rejected[0]).toMatchObject({ code: "IDENTITY_CHANGED", row: { id: a.id } });
    await second.items.toArrayWhenReady();
    expect(second.items.has(a.id)).toBe(false);
    expect(shown).not.toContain(a.id); // never restored, not even for a moment
    await second.db.actions.items({ listId: "L", title: "bob's" }).transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.title)).toEqual(["bob's"]);
    expect(await queued(second)).toBe(0);
  });

  // A page that reported the old identity's write and was reloaded before
  // the record's delete committed found the record again and reported it a
  // second time. The record now goes first, the report right after: a page
  // gone before the delete committed has not reported it yet, the next one
  // does — once.
  test("an old identity's write found after a reload is reported once, also when a reload cut the first report's delete short", async () => {
    const room = freshRoom();
    const { persistence, a, proxy } = await aliceQueuedOffline(room);

    // Bob's page goes away while the delete of alice's record is in progress (it never completes).
    const cutShort = cutTxDeletesShort(persistence);
    const second = openSession({ host: proxy.host, room, persistence: cutShort.persistence, token: "user:bob" });
    await waitFor(() => cutShort.deleting(), { message: "the second page deletes alice's record" });
    second.close();

    const third = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    await waitFor(() => third.rejected.length === 1, { message: "reported by the page that deleted it" });
    await waitFor(async () => (await queued(third)) === 0, { message: "record gone" });
    const reports = [...second.rejected, ...third.rejected];
    expect(reports.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", a.id]]);
  });

  // The same race during a session: refreshAuth() reported alice's queued
  // write at once and deleted its record later; a reload in between found
  // the record and reported the write again.
  test("a write dropped by a switch during the session is reported once, also when a reload cut its record's delete short", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const proxy = await offlineProxy();
    const cutShort = cutTxDeletesShort(persistence);
    let token = "user:alice";
    const first = openSession({ host: proxy.host, room, persistence: cutShort.persistence, token: () => token });
    await first.db.executor.waitForInit();
    const a = first.db.actions.items({ listId: "L", title: "alice's" });
    await waitFor(async () => (await queued(first)) === 1);
    token = "user:bob";
    void first.client.refreshAuth();
    await waitFor(() => cutShort.deleting() || first.rejected.length > 0, { message: "the switch drops alice's write" });
    await waitFor(() => cutShort.deleting(), { message: "its record is being deleted" });
    first.close(); // the page goes away before the delete completed

    const second = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    await waitFor(async () => (await queued(second)) === 0, { message: "record gone" });
    await waitFor(() => first.rejected.length + second.rejected.length > 0, { message: "reported" });
    const reports = [...first.rejected, ...second.rejected];
    expect(reports.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", a.id]]);
  });

  // Such records were run by the library's queue, failed as "not a Lunora
  // write" (or its unknown-function check) and were deleted — no report.
  test("a queued record this outbox cannot send (corrupt, another version, hostile ids) is deleted, then reported once as UNREADABLE_WRITE", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const garbage = unreadableRecords(room);
    for (const [key, value] of garbage) await persistence.storage.set(key, value);

    const session = openSession({ host: worker.host, room, persistence });
    await waitFor(() => session.storageFailures.length >= garbage.length, { message: "every record reported" });
    expect(session.storageFailures.map((event) => event.code)).toEqual(garbage.map(() => "UNREADABLE_WRITE"));
    expect(session.storageFailures.map((event) => event.data?.key).sort()).toEqual(garbage.map(([key]) => key).sort());
    expect(session.rejected).toEqual([]);
    expect((await persistence.storage.keys()).filter((key) => key.startsWith("tx:"))).toEqual([]);
    await session.db.actions.items({ listId: "L", title: "after the unreadable records" }).transaction.isPersisted.promise;
    session.close();

    // Deleted before they were reported: a reload finds nothing to report.
    const reloaded = openSession({ host: worker.host, room, persistence });
    await reloaded.db.executor.waitForInit();
    await reloaded.db.actions.items({ listId: "L", title: "after the reload" }).transaction.isPersisted.promise;
    expect(reloaded.storageFailures).toEqual([]);
    expect(session.storageFailures).toHaveLength(garbage.length);
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["after the reload", "after the unreadable records"]);
  });
  // A page closed while its outbox starts judges nothing (the next page does),
  // but its executor still ran what it loaded: the library failed a record it
  // has no function for (or #executeWrite refused it as "not a Lunora write")
  // and deleted it — never reported by that page, never found by the next.
  test("a page disposed while its queue loads leaves unreadable records for the next page, which reports each once", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const garbage = unreadableRecords(room).filter(([key]) => key === "tx:unknown-function" || key === "tx:unassigned");
    for (const [key, value] of garbage) await persistence.storage.set(key, value);

    // The page goes away just as its executor is told it leads (before it loads the queue).
    let first: ReturnType<typeof openSession> | undefined;
    first = openSession({
      host: worker.host,
      room,
      persistence,
      leaderElection: {
        requestLeadership: async () => {
          first!.close();
          return true;
        },
        releaseLeadership: () => undefined,
        isLeader: () => true,
        onLeadershipChange: () => () => undefined,
      },
    });
    await first.db.executor.waitForInit();
    const executor = first.db.executor.offlineExecutor!;
    await executor.waitForInit();
    await waitFor(() => executor.getPendingCount() === 0 && executor.getRunningCount() === 0, { message: "the disposed page's queue is idle" });
    expect(first.storageFailures).toEqual([]);

    const second = openSession({ host: worker.host, room, persistence });
    await waitFor(() => second.storageFailures.length >= garbage.length, { message: "every record reported by the next page" });
    expect(second.storageFailures.map((event) => [event.code, event.data?.key]).sort()).toEqual(garbage.map(([key]) => ["UNREADABLE_WRITE", key]).sort());
    expect(first.storageFailures).toEqual([]);
    expect((await persistence.storage.keys()).filter((key) => key.startsWith("tx:"))).toEqual([]);
  });
  // The executor disposes the online detector it was given. An outbox
  // disposed while its executor starts disposes that executor once more when
  // the start ends — by then a new outbox (a remount) may share the app's
  // detector, and must still hear "online".
  test("an outbox disposed while starting leaves a detector it shares with the next outbox working", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const online = manualOnlineDetector(false);
    let second: ReturnType<typeof openSession> | undefined;
    let first: ReturnType<typeof openSession> | undefined;
    first = openSession({
      host: worker.host,
      room,
      persistence,
      onlineDetector: online,
      leaderElection: {
        requestLeadership: async () => {
          first!.close(); // unmounted while its executor starts; the remount starts meanwhile
          second = openSession({ host: worker.host, room, persistence: freshIndexedDb(), onlineDetector: online });
          await second.db.executor.waitForInit();
          return true;
        },
        releaseLeadership: () => undefined,
        isLeader: () => true,
        onLeadershipChange: () => () => undefined,
      },
    });
    await first.db.executor.waitForInit();
    await first.db.executor.offlineExecutor!.waitForInit();
    const next = second!;
    await waitFor(() => next.items.utils.isAuthoritative(), { message: "the remount's socket is up" });
    const { transaction } = next.db.actions.items({ listId: "L", title: "after the remount" });
    await next.db.executor.whenStored();
    expect(await serverItems(worker, room)).toEqual([]);
    online.setOnline(true);
    await waitFor(() => next.client.pendingWrites === 0, { message: "the write went out once online" });
    await transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.title)).toEqual(["after the remount"]);
  });
  // A record of this identity that passes the record check but names a room
  // the client refuses (empty, with "/", over 128 characters — corrupt, or
  // of a version with other naming rules) threw from #restore when it was
  // registered: the library's load failed, nothing queued was replayed, and
  // the same happened on every reload.
  test("a queued record naming a room no client can open is reported as UNREADABLE_WRITE, and the other queued writes still go out", () =>
    expectReportedBesideQueuedWrite((room, identity) => {
      const meta = writeMeta({ identity, clientId: "c-other" });
      const record = (key: string, room: string) => storedRecord(key, { metadata: { lunora: { ...meta, room } } });
      return [
        ["tx:room-with-slash", record("room-with-slash", "a/b")],
        ["tx:room-empty", record("room-empty", "")],
        ["tx:room-too-long", record("room-too-long", "r".repeat(129))],
      ];
    }));
  // A clientSeq of 0 or 1.5, an empty clientId or mutator name pass a
  // typeof check but make a push frame the room refuses (a protocol error,
  // no outcome): such a write waited for an answer for good — counted in
  // pendingWrites forever, on every reload, and never reported.
  test("a queued record whose push the room would refuse (bad clientSeq, clientId or name) is reported as UNREADABLE_WRITE instead of waiting forever", async () => {
    const room = freshRoom();
    const persistence = freshIndexedDb();
    const identity = await tokenFingerprint("user:alice");
    const meta = writeMeta({ room, identity, clientId: "c-other" });
    const record = (key: string, fields: Record<string, unknown>) => storedRecord(key, { metadata: { lunora: { ...meta, ...fields } } });
    const bad: Array<[string, string]> = [
      ["tx:seq-zero", record("seq-zero", { clientId: "c-zero", clientSeq: 0 })],
      ["tx:seq-fraction", record("seq-fraction", { clientId: "c-fraction", clientSeq: 1.5 })],
      ["tx:client-id-empty", record("client-id-empty", { clientId: "" })],
      ["tx:name-empty", record("name-empty", { clientId: "c-name", name: "" })],
    ];
    for (const [key, value] of bad) await persistence.storage.set(key, value);

    const session = openSession({ host: worker.host, room, persistence });
    await waitFor(() => session.storageFailures.length >= bad.length, { message: "every bad record reported" });
    expect(session.storageFailures.map((event) => [event.code, event.data?.key]).sort()).toEqual(bad.map(([key]) => ["UNREADABLE_WRITE", key]).sort());
    await session.db.actions.items({ listId: "L", title: "after the bad records" }).transaction.isPersisted.promise;
    await waitFor(() => session.client.pendingWrites === 0, { message: "nothing left waiting" });
    expect((await persistence.storage.keys()).filter((key) => key.startsWith("tx:"))).toEqual([]);
  });
  // The outbox refuses such a write when it is made (assertWriteFits), but a
  // stored one (another version's bound, a hand-edited database) was sent
  // as is: a frame over the room's bound, refused, resent on every reconnect.
  test("a queued record too big for any push frame is reported as UNREADABLE_WRITE, and the other queued writes still go out", () =>
    expectReportedBesideQueuedWrite((room, identity) => {
      const huge = writeMeta({ room, identity, clientId: "c-huge", args: { id: randomUUID(), listId: "L", title: "x".repeat(MAX_PUSH_FRAME_BYTES + 200_000) } });
      return [["tx:huge", storedRecord("huge", { metadata: { lunora: huge } })]];
    }));
});
