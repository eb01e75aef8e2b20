/**
 * One poke is atomic across collections (invariant 3): a row moving from one
 * view of a shape to another in one poke is never seen in neither — not by a
 * synchronous change listener of either collection.
 */
import { createCollection, createLiveQueryCollection, eq } from "@tanstack/db";
import { afterAll, beforeAll, expect, test } from "vitest";
import { LunoraClient, lunoraCollectionOptions } from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, startFixtureRoom, updateItem } from "../helpers/fixture-room.js";
import { recordingWebSocket } from "../helpers/recording-websocket.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

test("a row moving from one collection to another in one poke is never observed in neither (nor in both)", async () => {
  const room = "atomic-poke";
  await putItems(worker, room, [
    { id: "m1", listId: "inbox", title: "move me" },
    { id: "m2", listId: "inbox", title: "stay" },
  ]);
  const client = new LunoraClient({ host: worker.host, party: "room", auth: "user:alice", WebSocket: recordingWebSocket().WebSocket, pingIntervalMs: 0 });
  const view = (listId: string) =>
    createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId } }, shardKey: room, load: "eager" }).config);
  const inbox = view("inbox");
  const archive = view("archive");
  try {
    await Promise.all([inbox.toArrayWhenReady(), archive.toArrayWhenReady()]);
    expect(inbox.has("m1")).toBe(true);
    const seen: Array<[inInbox: boolean, inArchive: boolean]> = [];
    let moving = false;
    const look = () => {
      if (moving) seen.push([inbox.has("m1"), archive.has("m1")]);
    };
    // includeInitialState: a subscriber is only told of deletes of rows it was shown.
    const stops = [inbox.subscribeChanges(look, { includeInitialState: true }), archive.subscribeChanges(look, { includeInitialState: true })];
    moving = true;
    await updateItem(worker, room, { id: "m1", listId: "archive" });
    await waitFor(() => archive.has("m1") && !inbox.has("m1"), { message: "the move" });
    for (const stop of stops) stop.unsubscribe();
    expect(seen.length).toBeGreaterThanOrEqual(2);
    // Every observation, in either collection's listener, is the moved state.
    expect(seen.every(([inInbox, inArchive]) => !inInbox && inArchive)).toBe(true);

    // A live query joining both views: m2 moves the same way; its joined row
    // (from one side or the other) must never drop out of the result. (A guard:
    // TanStack's live-query scheduling already ran after both commits before
    // the fix; the synchronous listeners above are what saw half a poke.)
    const both = createLiveQueryCollection((q) =>
      q
        .from({ i: inbox })
        .fullJoin({ a: archive }, ({ i, a }) => eq(i.id, a.id))
        .select(({ i, a }) => ({ inInbox: i?.id, inArchive: a?.id })),
    );
    await both.toArrayWhenReady();
    const hasM2 = () => both.toArray.some((row) => row.inInbox === "m2" || row.inArchive === "m2");
    expect(hasM2()).toBe(true);
    const gaps: number[] = [];
    const watch = both.subscribeChanges(() => {
      if (!hasM2()) gaps.push(both.size);
    });
    await updateItem(worker, room, { id: "m2", listId: "archive" });
    await waitFor(() => both.toArray.some((row) => row.inArchive === "m2" && row.inInbox === undefined), { message: "the joined move" });
    watch.unsubscribe();
    expect(gaps).toEqual([]);
    await both.cleanup();
  } finally {
    await inbox.cleanup();
    await archive.cleanup();
    client.close();
  }
});
