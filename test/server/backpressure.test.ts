/**
 * One slow reader must not stall the others or grow the room's memory
 * without bound: past 8 MiB of unacknowledged poke text the room closes it
 * (4009) and it resumes later from its cursor. A client that acknowledges
 * (LunoraClient does) can receive any amount.
 */
import { randomBytes } from "node:crypto";
import { createCollection } from "@tanstack/db";
import { afterAll, beforeAll, expect, test } from "vitest";
import { LunoraClient, lunoraCollectionOptions } from "../../src/index.js";
import { CLOSE_CODES } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { putItems, roomCall, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { WebSocket } from "ws";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom({ preventEviction: true });
});
afterAll(() => worker?.stop());

/** Incompressible rows of ~100 kB (permessage-deflate would shrink repeated text). */
const bigRows = (prefix: string, count: number, listId = "bp") =>
  Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i}`, listId, title: randomBytes(75_000).toString("base64") }));

test("a reader that stops reading is closed with 4009 once past the bound; the others receive everything", async () => {
  const room = "backpressure";
  const slow = await RawSocket.connect(worker.host, room);
  const fast = await RawSocket.connect(worker.host, room);
  slow.subscribe("s", { list: "items" });
  fast.subscribe("s", { list: "items" });
  await slow.nextPoke("s");
  await fast.nextPoke("s");
  // Stop reading from the kernel: the room's frames pile up on its side.
  (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
  for (let batch = 0; batch < 12; batch++) await putItems(worker, room, bigRows(`b${batch}`, 10));
  await waitFor(() => fast.rows("s").size === 120, { message: "the fast reader got all 120 rows", timeoutMs: 60_000 });
  const stats = await roomCall<{ slowConsumersClosed: number }>(worker, room, "/lunora/stats");
  expect(stats.slowConsumersClosed).toBe(1);
  (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  await waitFor(() => slow.closed, { message: "slow reader closed", timeoutMs: 30_000 });
  expect(slow.closed!.code).toBe(CLOSE_CODES.SLOW_CONSUMER);
  expect(fast.closed).toBeNull();
  // Nothing is lost: resuming from its last cursor brings the rest.
  const cursor = slow.cursor("s")!;
  const again = await RawSocket.connect(worker.host, room);
  again.subscribe("s", { list: "items" }, cursor, slow.rows("s"));
  const resumed = await again.nextPoke("s");
  const have = new Set([...slow.rows("s").keys()]);
  for (const op of resumed.ops) have.add(op.key);
  expect(have.size).toBe(120);
  await Promise.all([fast.close(), again.close()]);
}, 120_000);

test("a LunoraClient acknowledges what it reads, so a large sync (20 MB) is never cut off", async () => {
  const room = "backpressure-client";
  const client = new LunoraClient({ host: worker.host, party: "room", auth: "user:alice", WebSocket, pingIntervalMs: 0 });
  const list = createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config);
  try {
    await list.toArrayWhenReady();
    for (let batch = 0; batch < 20; batch++) await putItems(worker, room, bigRows(`c${batch}`, 10));
    await waitFor(() => list.size === 200, { message: "all 200 rows", timeoutMs: 60_000 });
    const stats = await roomCall<{ slowConsumersClosed: number }>(worker, room, "/lunora/stats");
    expect(stats.slowConsumersClosed).toBe(0);
  } finally {
    await list.cleanup();
    client.close();
  }
}, 120_000);
