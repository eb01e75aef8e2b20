/**
 * Loaded subsets in the query cache: each is its own entry (the view's key +
 * the subset's key) with its rows, cursor and resolved predicate. An offline
 * reload answers the same live query from IndexedDB (fake-indexeddb) before
 * any socket opens, and resumes from the cached cursor with the cached
 * predicate. The room is scripted here (the test plays its frames), so this
 * pins the client's half independently of the server.
 */
import "fake-indexeddb/auto";
import { createCollection, createLiveQueryCollection, eq, type Collection } from "@tanstack/db";
import net from "node:net";
import { describe, expect, it } from "vitest";
import { LunoraClient } from "../../src/client/index.js";
import { createIndexedDbQueryCache, type QueryCache } from "../../src/cache/index.js";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import type { RowOp } from "../../src/protocol/index.js";
import { eventually } from "../client/helpers/eventually.js";
import { onCleanup, startHarness } from "../client/helpers/harness.js";
import { freshDatabase } from "./helpers.js";

const put = (sub: string, key: string, row: Record<string, unknown>): RowOp => ({ op: "put", sub, key, row: { id: key, ...row } });

async function deadHost(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

function topTwo(client: LunoraClient) {
  const options = lunoraCollectionOptions({ client, list: "props", syncMode: "on-demand" } as never);
  const props = createCollection(options.config as never) as unknown as Collection<Record<string, unknown>, string>;
  const top = createLiveQueryCollection((q: any) =>
    q.from({ p: props }).where(({ p }: any) => eq(p.grp, "x")).orderBy(({ p }: any) => p.a, "desc").limit(2),
  ) as unknown as Collection<Record<string, unknown>, string>;
  const reader = top.subscribeChanges(() => undefined);
  onCleanup(async () => {
    reader.unsubscribe();
    await top.cleanup();
    await props.cleanup();
  });
  return top;
}

const ids = (collection: { keys(): IterableIterator<string | number> }) => [...collection.keys()].map(String).sort();

describe("on-demand subsets in the query cache", () => {
  it("an offline reload answers the live query from IndexedDB, then resumes with the cached cursor and predicate", async () => {
    const databaseName = freshDatabase();
    const resolved = { $and: [{ grp: { eq: "x" } }, { a: { gte: 8 } }] };

    // Session 1: online, loads the window and its tie, writes them to the cache.
    let cache: QueryCache = createIndexedDbQueryCache({ databaseName });
    const h = await startHarness({ queryCache: cache, party: "room", auth: "user:alice" });
    const top = topTwo(h.client);
    const loaded = top.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    const window = await socket.subscribeFrame(0);
    socket.send({
      type: "poke",
      pokeId: "p1",
      subs: [window.id],
      resets: [window.id],
      subsets: [{ sub: window.id, where: resolved }],
      ops: [put(window.id!, "r9", { grp: "x", a: 9 }), put(window.id!, "r8", { grp: "x", a: 8 })],
      cursor: { seq: 10, epoch: "e1" },
    });
    const tie = await socket.subscribeFrame(1);
    socket.send({ type: "poke", pokeId: "p2", subs: [tie.id], resets: [tie.id], ops: [put(tie.id!, "r8", { grp: "x", a: 8 })], cursor: { seq: 10, epoch: "e1" } });
    await loaded;
    expect(ids(top)).toEqual(["r8", "r9"]);
    await cache.flush();
    h.client.close();
    await cache.close();

    // Session 2: no socket can open. The same query is answered from the cache.
    cache = createIndexedDbQueryCache({ databaseName });
    const offline = new LunoraClient({ host: await deadHost(), party: "room", auth: "user:alice", WebSocket: (await import("ws")).WebSocket, queryCache: cache, pingIntervalMs: 0 });
    onCleanup(() => cache.close());
    onCleanup(() => offline.close());
    const cached = topTwo(offline);
    await cached.preload();
    expect(ids(cached)).toEqual(["r8", "r9"]);
    expect(offline.status).not.toBe("connected");
    offline.close();
    await cache.close();

    // Session 3: online again. The window resumes from its cursor with the resolved predicate, no limit.
    cache = createIndexedDbQueryCache({ databaseName });
    const back = new LunoraClient({ host: h.room.host, party: "room", auth: "user:alice", WebSocket: (await import("ws")).WebSocket, queryCache: cache, pingIntervalMs: 0 });
    onCleanup(() => cache.close());
    onCleanup(() => back.close());
    const resumed = topTwo(back);
    void resumed.preload();
    const again = await h.room.socket(1);
    again.hello();
    const frames = await eventually(() => {
      const found = again.subscribes.find((frame) => JSON.stringify(frame.subset) === JSON.stringify({ where: resolved }));
      expect(found).toBeDefined();
      return found!;
    });
    expect(frames.cursor).toEqual({ seq: 10, epoch: "e1" });
    expect(ids(resumed)).toEqual(["r8", "r9"]);
  });
});
