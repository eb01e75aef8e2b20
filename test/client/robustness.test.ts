import { createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { createCollection } from "@tanstack/db";
import { describe, expect, it } from "vitest";
import { reconnectDelayMs } from "../../src/client/backoff.js";
import type { ConnectionStatus } from "../../src/client/index.js";
import { createInMemoryQueryCache, createInMemoryQueryCacheStore, viewCacheKey } from "../../src/cache/index.js";
import { checkpointsFor, lunoraCollectionOptions } from "../../src/collections/index.js";
import type { Cursor } from "../../src/protocol/index.js";
import { eventually } from "./helpers/eventually.js";
import { onCleanup, startHarness } from "./helpers/harness.js";
import { messagesCollection, put, rowsOf } from "./helpers/rows.js";

const cursor = (seq: number): Cursor => ({ seq, epoch: "epoch-1" });

describe("reconnect backoff has full jitter", () => {
  it("each wait is drawn below the exponential ceiling, which is capped", () => {
    const bounds = { minDelayMs: 250, maxDelayMs: 10_000 };
    // The ceiling grows 1.3× per retry and stops at the cap.
    expect(reconnectDelayMs(1, bounds, () => 0.999999)).toBe(249);
    expect(reconnectDelayMs(2, bounds, () => 0.999999)).toBe(324);
    expect(reconnectDelayMs(40, bounds, () => 0.999999)).toBe(9_999);
    // Two clients drawing different numbers wait different times on the same wave.
    const waits = [0.05, 0.35, 0.65, 0.95].map((draw) => reconnectDelayMs(3, bounds, () => draw));
    expect(new Set(waits).size).toBe(4);
    expect(waits.every((wait) => wait >= 0 && wait < 250 * 1.3 ** 2)).toBe(true);
    // First attempts are not delayed; a broken random source cannot produce a negative or unbounded wait.
    expect(reconnectDelayMs(0, bounds, () => 0.5)).toBe(0);
    expect(reconnectDelayMs(5, bounds, () => -3)).toBe(0);
    expect(reconnectDelayMs(50, bounds, () => Number.NaN)).toBeLessThanOrEqual(10_000);
  });

  it("the client draws its reconnect wait from the random source: a draw of 0 retries at once even with a one-minute floor", async () => {
    const draws: number[] = [];
    const h = await startHarness({
      reconnect: {
        minDelayMs: 60_000,
        maxDelayMs: 60_000,
        random: () => {
          draws.push(0);
          return 0;
        },
      },
    });
    void messagesCollection(h.client).collection.preload();
    const first = await h.room.socket(0);
    first.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    expect(draws).toEqual([]); // the first connection is not delayed
    first.terminate();
    // partysocket's own backoff would wait 60 s here.
    const second = await h.room.socket(1);
    second.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    expect(draws.length).toBe(1);
  });
});

describe("a throwing auth provider", () => {
  it("makes the collections ready with UNAUTHENTICATED, reported once per failure streak", async () => {
    let calls = 0;
    let fail = true;
    const h = await startHarness({
      auth: () => {
        calls++;
        if (fail) throw new Error("token endpoint unreachable");
        return "ok";
      },
    });
    const messages = messagesCollection(h.client);
    await messages.collection.preload(); // hangs before the fix
    expect(messages.collection.status).toBe("ready");
    expect(messages.errors.map((e) => e.code)).toEqual(["UNAUTHENTICATED"]);
    // Several retries of the same streak, one report.
    await eventually(() => expect(calls).toBeGreaterThanOrEqual(4));
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["UNAUTHENTICATED"]);
    // A collection created during the streak is told too.
    const late = messagesCollection(h.client, { room: "other" });
    await late.collection.preload();
    expect(late.errors.map((e) => e.code)).toEqual(["UNAUTHENTICATED"]);

    fail = false;
    const socket = await eventually(() => h.room.openSockets("default")[0] ?? Promise.reject(new Error("no socket yet")));
    socket.hello();
    const { id } = await socket.subscribeFrame(0);
    socket.poke({ pokeId: "p", subs: [id!], resets: [id!], parts: [[put(id!, { id: "m1", text: "hi" })]], cursor: cursor(1) });
    await eventually(() => expect(rowsOf(messages.collection)).toEqual([{ id: "m1", text: "hi" }]));
  });
});

describe("the query cache after a failed auth() at start-up", () => {
  it("attaches once the identity is known: synced rows are cached and hydrate the next session", async () => {
    const store = createInMemoryQueryCacheStore();
    let fail = true;
    const h = await startHarness({
      auth: () => {
        if (fail) throw new Error("offline");
        return "user-token";
      },
      queryCache: createInMemoryQueryCache({ store, debounceMs: 0, maxWaitMs: 0 }),
    });
    const cache = h.client.queryCache!;
    const messages = messagesCollection(h.client);
    void messages.collection.preload();
    await eventually(() => expect(h.clientErrors.length).toBe(1));
    await eventually(() => expect(cache.status).toBe("idle")); // waiting for an identity, not failed
    fail = false;
    const socket = await h.room.socket(0);
    socket.hello();
    const { id } = await socket.subscribeFrame(0);
    socket.poke({ pokeId: "p", subs: [id!], resets: [id!], parts: [[put(id!, { id: "m1", text: "cached" })]], cursor: cursor(3) });
    await eventually(() => expect(rowsOf(messages.collection)).toHaveLength(1));
    expect(cache.status).toBe("ready");
    await eventually(async () => {
      await cache.flush();
      expect(store.views.size).toBe(1);
    });

    // Next session: the cached rows hydrate before any socket opens.
    const next = await startHarness({ auth: "user-token", queryCache: createInMemoryQueryCache({ store }) });
    const reloaded = messagesCollection(next.client);
    await reloaded.collection.preload();
    expect(rowsOf(reloaded.collection)).toEqual([{ id: "m1", text: "cached" }]);
  });
});

describe("re-scoping within one room", () => {
  it("keeps the socket: four re-scopes open one socket and the status never leaves connected", async () => {
    const h = await startHarness();
    const options = lunoraCollectionOptions({
      client: h.client,
      shape: { name: "messagesByFolder" },
      shardKey: "mailbox",
      scopeBy: "folder",
    });
    const collection = createCollection(options.config);
    onCleanup(() => collection.cleanup());
    void collection.preload();
    options.scope({ folder: "inbox" });
    const socket = await h.room.socket(0);
    socket.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    const statuses: ConnectionStatus[] = [];
    h.client.onStatusChange((status) => statuses.push(status));

    for (const folder of ["archive", "sent", "drafts", "inbox"]) options.scope({ folder });
    await socket.subscribeFrame(4);
    expect(h.room.sockets).toHaveLength(1);
    expect(socket.closed).toBe(false);
    expect(statuses).toEqual([]);
    expect(h.client.roomStatus("mailbox")).toBe("connected");
    expect(socket.frames.filter((frame) => frame.type === "unsubscribe")).toHaveLength(4);
  });

  it("keeps the socket also when re-scoped again while the previous view is still being read from the query cache", async () => {
    const h = await startHarness({ queryCache: createInMemoryQueryCache() });
    const options = lunoraCollectionOptions({ client: h.client, shape: { name: "messagesByFolder" }, shardKey: "mailbox", scopeBy: "folder" });
    const collection = createCollection(options.config);
    onCleanup(() => collection.cleanup());
    void collection.preload();
    options.scope({ folder: "inbox" });
    const socket = await h.room.socket(0);
    socket.hello();
    await socket.subscribeFrame(0);
    await eventually(() => expect(h.client.status).toBe("connected"));
    const statuses: ConnectionStatus[] = [];
    h.client.onStatusChange((status) => statuses.push(status));
    // Both in one task: the first switch's cache read has not finished when the second comes.
    options.scope({ folder: "archive" });
    options.scope({ folder: "sent" });
    const next = await socket.subscribeFrame(1);
    expect(next.source).toEqual({ shape: "messagesByFolder", args: { folder: "sent" } });
    expect(h.room.sockets).toHaveLength(1);
    expect(socket.closed).toBe(false);
    expect(statuses).toEqual([]);
  });

  it("the same args in another key order are the same view: no new subscription", async () => {
    const h = await startHarness();
    const options = lunoraCollectionOptions({
      client: h.client,
      shape: { name: "messagesByFolder", args: { limit: 20 } },
      shardKey: "mailbox",
      scopeBy: "folder",
    });
    const collection = createCollection(options.config);
    onCleanup(() => collection.cleanup());
    void collection.preload();
    options.scope({ folder: "inbox", sort: "date" });
    const socket = await h.room.socket(0);
    await socket.subscribeFrame(0);
    options.scope({ sort: "date", folder: "inbox" });
    options.scope({ folder: "other" });
    const second = await socket.subscribeFrame(1);
    // The first subscribe after the reordered scope is the one for "other".
    expect(second.source).toEqual({ shape: "messagesByFolder", args: { limit: 20, folder: "other" } });
    expect(socket.subscribes).toHaveLength(2);
  });
});

describe("view keys", () => {
  it("args named __proto__ or constructor are part of the key, not dropped", () => {
    const key = (args: unknown) => viewCacheKey("p", "r", { shape: "s", args });
    const withProto = JSON.parse('{"folder":"a","__proto__":{"folder":"b"}}') as unknown;
    expect(key(withProto)).not.toBe(key({ folder: "a" }));
    expect(key(withProto)).toContain("__proto__");
    expect(key({ constructor: "x" })).not.toBe(key({}));
    expect(key({ b: 1, a: 2 })).toBe(key({ a: 2, b: 1 }));
  });
});

describe("client.push()", () => {
  it("to a room the client holds no socket in returns false and opens nothing", async () => {
    const h = await startHarness();
    expect(h.client.push("elsewhere", { clientId: "c1", mutations: [{ clientSeq: 1, name: "x:y", args: null }] })).toBe(false);
    expect(h.client.roomStatus("elsewhere")).toBe("idle");
    expect(h.client.status).toBe("idle");
    // Give a wrongly opened socket every chance to show up before checking.
    void messagesCollection(h.client, { room: "probe" }).collection.preload();
    await h.room.socket(0);
    expect(h.room.sockets.map((socket) => socket.room)).toEqual(["probe"]);
  });
});

describe("connection timeout", () => {
  it("is configurable: an upgrade the server never answers is abandoned and retried after connectTimeoutMs", async () => {
    // A TCP server that accepts and never answers the HTTP upgrade (a black-holed load balancer).
    const accepted: Socket[] = [];
    const server = createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onCleanup(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of accepted) socket.destroy();
          server.close(() => resolve());
        }),
    );
    const h = await startHarness({
      host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
      connectTimeoutMs: 50,
      reconnect: { minDelayMs: 1, maxDelayMs: 1, random: () => 0 },
    });
    void messagesCollection(h.client).collection.preload();
    // With partysocket's fixed 4 s the second attempt comes after the 5 s this waits.
    await eventually(() => expect(accepted.length).toBeGreaterThanOrEqual(3), 3_000);
  });
});

describe("checkpoints", () => {
  it("forget the previous identity's outcomes on an identity switch", async () => {
    let token = "alice";
    const h = await startHarness({ auth: () => token });
    const checkpoints = checkpointsFor(h.client);
    const messages = messagesCollection(h.client);
    void messages.collection.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    const { id } = await socket.subscribeFrame(0);
    socket.poke({ pokeId: "p", subs: [id!], resets: [id!], parts: [[]], cursor: cursor(1), mutations: [{ clientSeq: 1, status: "applied" }] });
    await eventually(() => expect(checkpoints.watermark("default")).toBe(1));
    token = "bob";
    await h.client.refreshAuth();
    expect(checkpoints.watermark("default")).toBe(0);
    expect(checkpoints.result("default", 1)).toBeUndefined();
  });
});

describe("aggregate status", () => {
  it("one room that refuses the token does not show a client whose other room works as offline", async () => {
    const h = await startHarness({ auth: "revoked-in-b" });
    void messagesCollection(h.client, { room: "a" }).collection.preload();
    const b = messagesCollection(h.client, { room: "b" });
    void b.collection.preload();
    await eventually(() => expect(h.room.openSockets()).toHaveLength(2));
    for (const socket of h.room.openSockets()) socket.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));

    const refuse = () => {
      for (const socket of h.room.openSockets("b")) socket.close(4001, "revoked");
    };
    refuse();
    // The provider returns the same token: the room refuses it again and the client reports it.
    await eventually(() => {
      refuse();
      expect(h.clientErrors.map((e) => e.error.code)).toContain("UNAUTHENTICATED");
    });
    expect(h.client.roomStatus("b")).toBe("offline");
    expect(h.client.roomStatus("a")).toBe("connected");
    expect(h.client.status).toBe("connected");
  });
});

describe("client.close()", () => {
  it("disposes the write outbox built on the client and closes the query cache", async () => {
    const { defineCollections, createInMemoryPersistence, alwaysLeader, manualOnlineDetector } = await import("../../src/index.js");
    const h = await startHarness({ queryCache: createInMemoryQueryCache(), persistence: createInMemoryPersistence() });
    const db = defineCollections(
      h.client,
      {
        messages: {
          list: "messages",
          insert: { mutation: "messages:send", optimistic: (input: { text: string }, id) => ({ id, ...input }), toArgs: (row) => row },
        },
      },
      { leaderElection: alwaysLeader(), onlineDetector: manualOnlineDetector() },
    );
    onCleanup(() => db.collections.messages.cleanup());
    const cache = h.client.queryCache!;
    await eventually(() => expect(cache.status).toBe("ready"));
    h.client.close();
    await eventually(() => expect(cache.status).toBe("closed"));
    // A disposed outbox refuses new writes instead of queueing them for a client that is gone.
    expect(() => db.actions.messages({ text: "after close" })).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
  });
});
