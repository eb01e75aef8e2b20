/**
 * The read path end to end: LunoraClient + lunoraCollectionOptions + TanStack
 * DB collections in Node, over real loopback sockets, against the fixture
 * room in real workerd.
 */
import { createCollection, type Collection } from "@tanstack/db";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { LunoraClient, lunoraCollectionOptions, type LunoraError } from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { deleteItem, putItems, roomCall, serverItems, startFixtureRoom, updateItem } from "../helpers/fixture-room.js";
import { recordingWebSocket } from "../helpers/recording-websocket.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";

type Item = { id: string; listId: string; title: string; rank: number; secret?: number };

let worker: LocalWorker;
const cleanups: Array<() => unknown> = [];
let counter = 0;
const freshRoom = () => `rp-${Date.now().toString(36)}-${counter++}`;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(() => worker?.stop());

function newClient(options: { host?: string; token?: string | (() => string); identify?: (token: string) => string } = {}) {
  const recording = recordingWebSocket();
  const client = new LunoraClient({
    host: options.host ?? worker.host,
    party: "room",
    auth: options.token ?? "user:alice",
    ...(options.identify ? { identify: options.identify } : {}),
    WebSocket: recording.WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
  });
  cleanups.push(() => client.close());
  return { client, log: recording.log };
}

/** The collection's rows without TanStack's virtual `$` properties. */
function rowsOf(collection: Collection<any, any, any>): Map<string, Item> {
  return new Map(
    [...collection.state.entries()].map(([key, row]) => [String(key), Object.fromEntries(Object.entries(row as object).filter(([k]) => !k.startsWith("$"))) as Item]),
  );
}

function track<T extends Collection<any, any, any>>(collection: T): T {
  cleanups.push(() => collection.cleanup());
  return collection;
}

const projected = (item: Item) => ({ id: item.id, listId: item.listId, title: item.title, rank: item.rank });

describe("read path", () => {
  test("a raw sql.exec insert by the room's own route reaches the collections of two subscribed clients", async () => {
    const room = freshRoom();
    const a = newClient();
    const b = newClient({ token: "user:bob" });
    const list = track(createCollection(lunoraCollectionOptions({ client: a.client, list: "items", shardKey: room, load: "eager" }).config));
    const shape = track(
      createCollection(lunoraCollectionOptions({ client: b.client, shape: { name: "itemsByList", args: { listId: "L" } }, shardKey: room, load: "eager" }).config),
    );
    await Promise.all([list.toArrayWhenReady(), shape.toArrayWhenReady()]);
    await putItems(worker, room, [{ id: "i1", listId: "L", title: "hello" }, { id: "i2", listId: "M", title: "other" }]);
    await waitFor(() => list.size === 2 && shape.size === 1, { message: "both collections synced" });
    expect(rowsOf(shape).get("i1")).toEqual({ id: "i1", listId: "L", title: "hello", rank: 0 });
    expect(rowsOf(list).get("i2")).toMatchObject({ id: "i2", listId: "M", title: "other" });
  });

  test("an update moving a row out of a shape deletes it on the client; one moving in inserts it", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "x", listId: "A", title: "x" }, { id: "y", listId: "B", title: "y" }]);
    const { client } = newClient();
    const shape = track(createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "A" } }, shardKey: room, load: "eager" }).config));
    await shape.toArrayWhenReady();
    expect([...rowsOf(shape).keys()]).toEqual(["x"]);
    await updateItem(worker, room, { id: "x", listId: "B" });
    await waitFor(() => shape.size === 0, { message: "x left the shape" });
    await updateItem(worker, room, { id: "y", listId: "A" });
    await waitFor(() => shape.has("y"), { message: "y entered the shape" });
    expect([...rowsOf(shape).keys()]).toEqual(["y"]);
  });

  test("a client offline while 2,000 changes hit 200 keys receives only those 200 keys' final state", async () => {
    const room = freshRoom();
    await putItems(worker, room, Array.from({ length: 250 }, (_, i) => ({ id: `k-${i}`, listId: "k", title: "start" })));
    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    const { client, log } = newClient({ host: proxy.host });
    const shape = track(createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "k" } }, shardKey: room, load: "eager" }).config));
    await shape.toArrayWhenReady();
    expect(shape.size).toBe(250);
    proxy.setOnline(false);
    await waitFor(() => client.status === "offline", { message: "client offline" });
    const opsBefore = log.rowOps();
    const resetsBefore = log.resets();

    await roomCall(worker, room, "/items/churn", { count: 2000, keys: 200, listId: "k" });
    proxy.setOnline(true);
    await waitFor(() => client.status === "connected", { message: "client back" });
    const server = (await serverItems(worker, room)).filter((item) => item.listId === "k");
    await waitFor(() => shape.get("k-0")?.rank === 10, { message: "changes applied" });
    expect(log.rowOps() - opsBefore).toBe(200);
    expect(log.resets()).toBe(resetsBefore);
    expect(rowsOf(shape)).toEqual(new Map(server.map((item) => [item.id, projected(item)])));
  });

  test("a cursor older than the trimmed log, and a changed epoch, each produce a reset that ends equal to the server", async () => {
    const room = freshRoom();
    await putItems(worker, room, Array.from({ length: 60 }, (_, i) => ({ id: `t-${i}`, listId: "t", title: "x" })));
    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    const { client, log } = newClient({ host: proxy.host });
    const shape = track(createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "t" } }, shardKey: room, load: "eager" }).config));
    await shape.toArrayWhenReady();

    // 1. Trimmed past the cursor while offline.
    proxy.setOnline(false);
    await waitFor(() => client.status === "offline");
    await roomCall(worker, room, "/items/churn", { count: 900, keys: 50, listId: "t" });
    await deleteItem(worker, room, "t-59");
    await putItems(worker, room, { id: "t-new", listId: "t", title: "new" });
    await roomCall(worker, room, "/lunora/sweep");
    let resets = log.resets();
    proxy.setOnline(true);
    await waitFor(() => log.resets() > resets, { message: "a reset after the trim" });
    let server = (await serverItems(worker, room)).filter((item) => item.listId === "t");
    await waitFor(() => shape.size === server.length && !shape.has("t-59"));
    expect(rowsOf(shape)).toEqual(new Map(server.map((item) => [item.id, projected(item)])));

    // 2. A new epoch while offline.
    proxy.setOnline(false);
    await waitFor(() => client.status === "offline");
    await roomCall(worker, room, "/lunora/reset-epoch");
    await deleteItem(worker, room, "t-0");
    resets = log.resets();
    proxy.setOnline(true);
    await waitFor(() => log.resets() > resets, { message: "a reset after the epoch change" });
    server = (await serverItems(worker, room)).filter((item) => item.listId === "t");
    await waitFor(() => !shape.has("t-0"));
    expect(rowsOf(shape)).toEqual(new Map(server.map((item) => [item.id, projected(item)])));
  });

  test("a token that expires mid-session: the room closes with 4001, the client re-reads its token and resumes", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "e1", listId: "e", title: "before" });
    const tokens: string[] = [];
    let expiresAt = Date.now() + 1_000;
    const { client, log } = newClient({
      token: () => {
        const token = `user:alice:exp=${expiresAt}`;
        tokens.push(token);
        return token;
      },
      // A refreshed token of the same user is the same identity: no reset.
      identify: (token) => token.split(":")[1],
    });
    const list = track(createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config));
    await list.toArrayWhenReady();
    const resets = log.resets();
    await waitFor(() => Date.now() > expiresAt + 50, { timeoutMs: 5_000 });
    expiresAt = Date.now() + 60_000; // the app's token refresh
    // The next flush finds the token expired and closes the socket.
    await putItems(worker, room, { id: "e2", listId: "e", title: "after expiry" });
    await waitFor(() => list.has("e2"), { message: "resumed with the fresh token" });
    expect(new Set(tokens).size).toBeGreaterThanOrEqual(2);
    expect(log.frames.some((frame) => frame.includes('"token expired"'))).toBe(true);
    expect(log.resets()).toBe(resets); // resumed from the cursor, no snapshot
  });

  test("an identity change drops the old identity's rows at once, even offline, then syncs the new identity's", async () => {
    const room = freshRoom();
    await roomCall(worker, room, "/notes/put", { id: "n-alice", ownerId: "alice", body: "alice's secret" });
    await roomCall(worker, room, "/notes/put", { id: "n-bob", ownerId: "bob", body: "bob's" });
    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    let token = "user:alice";
    const { client, log } = newClient({ host: proxy.host, token: () => token });
    const notes = track(createCollection(lunoraCollectionOptions({ client, list: "notes", shardKey: room, load: "eager" }).config));
    await notes.toArrayWhenReady();
    expect([...rowsOf(notes).keys()]).toEqual(["n-alice"]);
    const states: string[][] = [];
    // With the initial state, so TanStack reports the deletes of rows this subscriber was shown.
    const subscription = notes.subscribeChanges(() => states.push([...notes.keys()].map(String)), { includeInitialState: true });
    cleanups.push(() => subscription.unsubscribe());

    proxy.setOnline(false);
    await waitFor(() => client.status === "offline");
    token = "user:bob"; // the app switched accounts while offline
    await client.refreshAuth();
    await waitFor(() => notes.size === 0, { message: "alice's rows dropped while offline" });
    const framesBefore = log.frames.length;
    proxy.setOnline(true);
    await waitFor(() => notes.has("n-bob"), { message: "bob's notes synced" });
    expect([...rowsOf(notes).keys()]).toEqual(["n-bob"]);
    expect(states).toEqual([["n-alice"], [], ["n-bob"]]);
    // Bob's socket subscribed without Alice's cursor, and nothing of Alice's reached it.
    expect(log.sent.filter((frame) => frame.includes('"subscribe"')).at(-1)).not.toContain('"cursor"');
    expect(log.frames.slice(framesBefore).join("\n")).not.toContain("alice");
  });

  test("restart() of the room: clients reconnect by themselves and resume", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "r1", listId: "r", title: "1" });
    const { client, log } = newClient();
    const list = track(createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config));
    await list.toArrayWhenReady();
    const resets = log.resets();
    await worker.restart();
    await putItems(worker, room, { id: "r2", listId: "r", title: "2" });
    await waitFor(() => list.has("r2"), { message: "r2 after restart", timeoutMs: 30_000 });
    expect(client.status).toBe("connected");
    expect(log.resets()).toBe(resets); // resumed from the cursor, not re-snapshotted
    expect([...rowsOf(list).keys()].sort()).toEqual(["r1", "r2"]);
  });

  test("a poke over 900,000 bytes is split and still applied atomically", async () => {
    const room = freshRoom();
    const { client, log } = newClient();
    const shape = track(createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "big" } }, shardKey: room, load: "eager" }).config));
    await shape.toArrayWhenReady();
    const sizes: number[] = [];
    const subscription = shape.subscribeChanges(() => sizes.push(shape.size));
    cleanups.push(() => subscription.unsubscribe());
    const framesBefore = log.frames.length;
    await putItems(worker, room, Array.from({ length: 400 }, (_, i) => ({ id: `big-${i}`, listId: "big", title: `${i}${"x".repeat(6_000)}` })));
    await waitFor(() => shape.size === 400);
    const parts = log.frames.slice(framesBefore).filter((frame) => frame.startsWith('{"type":"pokePart"'));
    expect(parts.length).toBeGreaterThan(2);
    // Readers saw 0 rows, then all 400: never a part of the poke.
    expect(sizes).toEqual([400]);
  });

  test("unknown shape, invalid args and a denied read: a coded error on that collection only", async () => {
    const room = freshRoom();
    const { client } = newClient({ token: "user:blocked" });
    const errors: Record<string, LunoraError[]> = { unknown: [], args: [], denied: [] };
    const good = track(createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config));
    const unknown = track(
      createCollection(lunoraCollectionOptions({ client, shape: { name: "noSuchShape" }, shardKey: room, load: "eager", onError: (e) => errors.unknown.push(e) }).config),
    );
    const args = track(
      createCollection(
        lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: 12 } as never }, shardKey: room, load: "eager", onError: (e) => errors.args.push(e) }).config,
      ),
    );
    const denied = track(createCollection(lunoraCollectionOptions({ client, list: "notes", shardKey: room, load: "eager", onError: (e) => errors.denied.push(e) }).config));
    // Each failing collection still becomes ready (no hanging preload).
    await Promise.all([good.toArrayWhenReady(), unknown.toArrayWhenReady(), args.toArrayWhenReady(), denied.toArrayWhenReady()]);
    await waitFor(() => errors.unknown.length && errors.args.length && errors.denied.length);
    expect([errors.unknown[0].code, errors.args[0].code, errors.denied[0].code]).toEqual(["SHAPE_NOT_FOUND", "INVALID_ARGS", "FORBIDDEN"]);
    await putItems(worker, room, { id: "ok", listId: "L", title: "still syncing" });
    await waitFor(() => good.has("ok"), { message: "the good collection keeps working" });
    expect(client.status).toBe("connected");
  });

  test("two rooms at once from one client; scope() moves a collection between them", async () => {
    const roomA = freshRoom();
    const roomB = freshRoom();
    await putItems(worker, roomA, { id: "a1", listId: roomA, title: "in A" });
    await putItems(worker, roomB, { id: "b1", listId: roomB, title: "in B" });
    const { client } = newClient();
    // Rooms are sharded by list: the room name is the listId.
    const options = lunoraCollectionOptions({ client, shape: { name: "itemsByList" }, scopeBy: "listId", load: "eager" });
    const scoped = track(createCollection(options.config));
    const fixedB = track(createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: roomB, load: "eager" }).config));
    await fixedB.toArrayWhenReady();
    options.scope({ listId: roomA });
    await waitFor(() => scoped.has("a1"));
    expect(client.roomStatus(roomA)).toBe("connected");
    expect(client.roomStatus(roomB)).toBe("connected");
    options.scope({ listId: roomB });
    await waitFor(() => scoped.has("b1") && !scoped.has("a1"), { message: "moved to room B" });
    await putItems(worker, roomA, { id: "a2", listId: roomA, title: "A again" });
    await putItems(worker, roomB, { id: "b2", listId: roomB, title: "B again" });
    await waitFor(() => scoped.has("b2") && fixedB.has("b2"));
    expect(scoped.has("a2")).toBe(false);
    // Room A's socket closes once nothing reads from it.
    await waitFor(() => client.roomStatus(roomA) === "idle", { message: "room A released" });
    options.scope();
    await waitFor(() => scoped.size === 0);
  });
});
