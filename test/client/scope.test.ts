import { createCollection } from "@tanstack/db";
import { describe, expect, it } from "vitest";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import { onCleanup, startHarness } from "./helpers/harness.js";
import { eventually } from "./helpers/eventually.js";
import { put, recordBatches, rowsOf } from "./helpers/rows.js";
import type { RoomSocket } from "./helpers/scripted-room.js";

const cursor = (seq: number) => ({ seq, epoch: "epoch-1" });

async function scopedMessages(load: "eager" | "lazy" = "eager") {
  const h = await startHarness();
  const options = lunoraCollectionOptions({
    client: h.client,
    shape: { name: "messagesByChannel", args: { limit: 50 } },
    scopeBy: "channelId",
    load,
  });
  const collection = createCollection(options.config);
  onCleanup(() => collection.cleanup());
  return { ...h, ...options, collection };
}

async function answer(socket: RoomSocket, index: number, rows: Array<{ id: string; text: string }>, seq: number) {
  const { id } = await socket.subscribeFrame(index);
  socket.hello();
  socket.poke({ pokeId: `p${seq}`, subs: [id!], resets: [id!], parts: [rows.map((row) => put(id!, row))], cursor: cursor(seq) });
  return id!;
}

describe("scoped collections", () => {
  it("a scoped collection syncs nothing until scope(args) names the room", async () => {
    const { client, room, scope, collection } = await scopedMessages();
    expect(collection.status).toBe("loading"); // eager: sync started
    expect(client.status).toBe("idle"); // …but no socket without a scope

    scope({ channelId: "general" });
    const socket = await room.socket(0);
    expect(socket.room).toBe("general");
    expect(await socket.subscribeFrame()).toEqual({
      type: "subscribe",
      id: expect.any(String),
      source: { shape: "messagesByChannel", args: { limit: 50, channelId: "general" } },
    });
    await answer(socket, 0, [{ id: "g1", text: "in general" }], 1);
    await collection.preload();
    expect(rowsOf(collection)).toEqual([{ id: "g1", text: "in general" }]);
    expect(collection.utils.room()).toBe("general");
  });

  it("scope(args) re-points: the old subscription stops and its rows go in one update before the new snapshot", async () => {
    const { room, scope, collection } = await scopedMessages();
    scope({ channelId: "general" });
    const general = await room.socket(0);
    await answer(general, 0, [{ id: "g1", text: "a" }, { id: "g2", text: "b" }], 1);
    await eventually(() => expect(collection.size).toBe(2));

    const batches = recordBatches(collection);
    scope({ channelId: "random" });
    // The old room's only subscription is gone, so its socket closes.
    await eventually(() => expect(general.closed).toBe(true));
    expect(collection.size).toBe(0);
    expect(batches).toHaveLength(1);
    expect(batches[0].map((change) => change.type)).toEqual(["delete", "delete"]);
    expect(collection.utils.cursor()).toBeUndefined();

    const random = await room.socket(1);
    expect(random.room).toBe("random");
    expect((await random.subscribeFrame()).source).toEqual({ shape: "messagesByChannel", args: { limit: 50, channelId: "random" } });
    await answer(random, 0, [{ id: "r1", text: "c" }], 1);
    await eventually(() => expect(rowsOf(collection)).toEqual([{ id: "r1", text: "c" }]));
  });

  it("scope() detaches: no subscription and no rows", async () => {
    const { room, scope, collection, client } = await scopedMessages();
    scope({ channelId: "general" });
    const general = await room.socket(0);
    await answer(general, 0, [{ id: "g1", text: "a" }], 1);
    await eventually(() => expect(collection.size).toBe(1));

    scope();
    expect(collection.size).toBe(0);
    await eventually(() => expect(general.closed).toBe(true));
    expect(client.status).toBe("idle");
    expect(collection.utils.room()).toBeUndefined();
  });

  it("scope() before sync starts is applied when sync starts", async () => {
    const { room, scope, collection, client } = await scopedMessages("lazy");
    scope({ channelId: "later" });
    expect(client.status).toBe("idle"); // lazy: nothing until someone reads
    const ready = collection.preload();
    const socket = await room.socket(0);
    expect(socket.room).toBe("later");
    await answer(socket, 0, [{ id: "l1", text: "x" }], 1);
    await ready;
    expect(rowsOf(collection)).toEqual([{ id: "l1", text: "x" }]);
  });

  it("scope with the args it already has keeps the rows and the subscription", async () => {
    const { room, scope, collection } = await scopedMessages();
    scope({ channelId: "general" });
    const socket = await room.socket(0);
    await answer(socket, 0, [{ id: "g1", text: "a" }], 1);
    await eventually(() => expect(collection.size).toBe(1));
    scope({ channelId: "general" });
    expect(collection.size).toBe(1);
    expect(socket.frames.filter((frame) => frame.type === "unsubscribe")).toEqual([]);
  });

  it("scope without the scopeBy arg is refused with INVALID_ARGS", async () => {
    const { scope } = await scopedMessages();
    expect(() => scope({ limit: 3 })).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
  });

  it("shardKey as a function picks the room from the merged args", async () => {
    const h = await startHarness();
    const options = lunoraCollectionOptions({
      client: h.client,
      shape: { name: "docs", args: { team: "t1" } },
      shardKey: (args: { team: string }) => `team-${args.team}`,
      load: "eager",
    });
    const collection = createCollection(options.config);
    onCleanup(() => collection.cleanup());
    const socket = await h.room.socket(0);
    expect(socket.room).toBe("team-t1");
    expect((await socket.subscribeFrame()).source).toEqual({ shape: "docs", args: { team: "t1" } });
  });
});
