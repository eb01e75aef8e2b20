/**
 * Shapes of any size through the real client: a snapshot twice the room's
 * slow-consumer bound becomes a ready TanStack collection; a snapshot past
 * the client's own poke bound fails that collection once, with a code,
 * instead of being fetched again forever.
 */
import { createCollection } from "@tanstack/db";
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import { LunoraClient, lunoraCollectionOptions, type LunoraError } from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, startFixtureRoom, updateItem, type ItemInput } from "../helpers/fixture-room.js";
import { recordingWebSocket } from "../helpers/recording-websocket.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(() => worker?.stop());

async function fill(room: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 20_000) {
    const batch: ItemInput[] = [];
    for (let i = start; i < Math.min(count, start + 20_000); i++) batch.push({ id: `k-${String(i).padStart(6, "0")}`, listId: "big", title: `row ${i} `.padEnd(100, "."), rank: i });
    await putItems(worker, room, batch);
  }
}

function newClient(limits?: { maxPokeChars?: number }) {
  const recording = recordingWebSocket();
  const client = new LunoraClient({
    host: worker.host,
    party: "room",
    auth: "user:alice",
    WebSocket: recording.WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
    ...(limits ? { limits } : {}),
  });
  cleanups.push(() => client.close());
  return { client, log: recording.log };
}

test("a 100,000-row shape (≈ 16 MB of protocol-4 frames, twice the slow-consumer bound) becomes a ready collection and stays live", async () => {
  const room = "big-client";
  await fill(room, 100_000);
  const { client, log } = newClient();
  const collection = createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "big" } }, shardKey: room, load: "eager" }).config);
  cleanups.push(() => collection.cleanup());
  await collection.toArrayWhenReady();
  expect(collection.size).toBe(100_000);
  expect(log.frames.join("").length).toBeGreaterThan(12 * 1024 * 1024);
  expect(log.resets()).toBe(1);
  await updateItem(worker, room, { id: "k-099999", title: "live after" });
  await waitFor(() => (collection.get("k-099999") as { title: string } | undefined)?.title === "live after", { message: "a live change" });
}, 180_000);

test("a snapshot past the client's poke bound fails its collection once with QUOTA_EXCEEDED and is not fetched again", async () => {
  const room = "big-bounded";
  await fill(room, 20_000);
  const { client, log } = newClient({ maxPokeChars: 1_000_000 });
  const errors: LunoraError[] = [];
  const collection = createCollection(
    lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "big" } }, shardKey: room, load: "eager", onError: (error) => errors.push(error) }).config,
  );
  cleanups.push(() => collection.cleanup());
  await waitFor(() => errors.length > 0, { message: "the error" });
  await collection.toArrayWhenReady();
  // Let the room finish streaming what it had started; nothing asks for it again.
  await waitFor(() => log.sent.some((frame) => frame.includes('"unsubscribe"')), { message: "the unsubscribe" });
  // A later subscription on the same socket is answered after everything sent before it.
  await putItems(worker, room, { id: "k-marker", listId: "big", title: "marker" });
  const other = createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "other" } }, shardKey: room, load: "eager" }).config);
  cleanups.push(() => other.cleanup());
  await other.toArrayWhenReady();
  expect(errors.map((error) => error.code)).toEqual(["QUOTA_EXCEEDED"]);
  const bigSubscribes = log.sent.filter((frame) => frame.includes('"type":"subscribe"') && frame.includes('"listId":"big"'));
  expect(bigSubscribes).toHaveLength(1);
  expect(collection.has("k-marker")).toBe(false);
});
