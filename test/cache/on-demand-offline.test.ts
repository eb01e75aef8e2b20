/**
 * Loaded subsets in the query cache: each is its own entry (the view's key +
 * the subset's key) with its rows, cursor and resolved predicate. An offline
 * reload answers the same live query from IndexedDB (fake-indexeddb) before
 * any socket opens, and resumes from the cached cursor with the cached
 * predicate. The room is scripted here (the test plays its frames), so this
 * pins the client's half independently of the server.
 */
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { LunoraClient } from "../../src/client/index.js";
import { createIndexedDbQueryCache, type QueryCache } from "../../src/cache/index.js";
import { eventually } from "../client/helpers/eventually.js";
import { onCleanup, startHarness } from "../client/helpers/harness.js";
import { TOP_TWO_RESOLVED, ids, onDemandTopTwo, serveTopTwo } from "../client/helpers/on-demand.js";
import { deadHost } from "../helpers/dead-host.js";
import { freshDatabase } from "./helpers.js";

const topTwo = (client: LunoraClient) => onDemandTopTwo(client).top;

describe("on-demand subsets in the query cache", () => {
  it("an offline reload answers the live query from IndexedDB, then resumes with the cached cursor and predicate", async () => {
    const databaseName = freshDatabase();
    // Session 1: online, loads the window and its tie, writes them to the cache.
    let cache: QueryCache = createIndexedDbQueryCache({ databaseName });
    const h = await startHarness({ queryCache: cache, party: "room", auth: "user:alice" });
    const top = topTwo(h.client);
    const loaded = top.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    await serveTopTwo(socket);
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
      const found = again.subscribes.find((frame) => JSON.stringify(frame.subset) === JSON.stringify({ where: TOP_TWO_RESOLVED }));
      expect(found).toBeDefined();
      return found!;
    });
    expect(frames.cursor).toEqual({ seq: 10, epoch: "e1" });
    expect(ids(resumed)).toEqual(["r8", "r9"]);
  });
});
