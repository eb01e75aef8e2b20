/**
 * Snapshots of any size (server-kit/snapshots.ts), over real sockets against
 * real workerd: a snapshot far past the slow-consumer bound streams to a
 * reader that keeps reading, waits for a reader that pauses without closing
 * it, and stays exact while the rows change under it.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MAX_FRAME_BYTES } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { deleteItem, putItems, serverItems, startFixtureRoom, updateItem, type ItemInput } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
const sockets: RawSocket[] = [];

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(async () => {
  await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
  await worker?.stop();
});

/** `count` rows of ~`width` + 60 characters each in poke text, keys `${prefix}-000000`…, in batches. */
async function fill(room: string, prefix: string, count: number, width = 48): Promise<void> {
  for (let start = 0; start < count; start += 20_000) {
    const batch: ItemInput[] = [];
    for (let i = start; i < Math.min(count, start + 20_000); i++) {
      batch.push({ id: `${prefix}-${String(i).padStart(6, "0")}`, listId: prefix, title: `row ${i} `.padEnd(width, "."), rank: i });
    }
    await putItems(worker, room, batch);
  }
}

async function connect(room: string): Promise<RawSocket> {
  const socket = await RawSocket.connect(worker.host, room, { token: "user:admin:admin" });
  sockets.push(socket);
  await waitFor(() => socket.frames.some((frame) => frame.type === "hello"), { message: "hello" });
  return socket;
}

const ROWS = 120_000; // with 96-character titles ≈ 18 MB of poke text: twice the 8 MiB slow-consumer bound

describe("a snapshot larger than the slow-consumer bound", () => {
  test("streams to completion to a reader that keeps reading, as one poke", async () => {
    const room = "snapshot-big";
    await fill(room, "big", ROWS, 96);
    const socket = await connect(room);
    socket.subscribe("s", { list: "items" });
    const poke = await waitFor(() => socket.pokes.find((candidate) => candidate.subs.includes("s")), { message: "the snapshot", timeoutMs: 120_000 });
    expect(socket.closed).toBeNull();
    expect(poke.resets).toEqual(["s"]);
    expect(poke.ops.length).toBe(ROWS);
    expect(socket.rows("s").size).toBe(ROWS);
    expect(socket.raw.join("").length).toBeGreaterThan(2 * 8 * 1024 * 1024);
    expect(Math.max(...socket.raw.map((frame) => Buffer.byteLength(frame)))).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    // Live again afterwards.
    await updateItem(worker, room, { id: "big-000000", title: "after the snapshot" });
    await waitFor(() => socket.rows("s").get("big-000000")?.title === "after the snapshot", { message: "a live change" });
  });

  test("a reader that pauses is not closed: the room waits at its window, then goes on", async () => {
    const room = "snapshot-paused";
    await fill(room, "p", 60_000);
    const socket = await connect(room);
    socket.acknowledge = false;
    socket.subscribe("s", { list: "items" });
    await waitFor(() => socket.frames.some((frame) => frame.type === "pokePart"), { message: "the first part" });
    // Stalled: it stops sending at its window (2 MiB plus at most one part), far below the snapshot.
    const received = () => socket.raw.join("").length;
    let stable = -1;
    await waitFor(
      async () => {
        const now = received();
        const settled = now === stable;
        stable = now;
        await new Promise((resolve) => setTimeout(resolve, 200));
        return settled;
      },
      { message: "the room stopped sending" },
    );
    expect(received()).toBeLessThan(2 * 1024 * 1024 + 2 * MAX_FRAME_BYTES);
    expect(socket.closed).toBeNull();
    socket.acknowledge = true;
    socket.ackNow();
    const poke = await waitFor(() => socket.pokes.find((candidate) => candidate.subs.includes("s")), { message: "the snapshot", timeoutMs: 60_000 });
    expect(poke.ops.length).toBe(60_000);
    expect(socket.closed).toBeNull();
  });

  test("rows changing under a streaming snapshot end up exactly as the room has them", async () => {
    const room = "snapshot-moving";
    await fill(room, "m", 40_000);
    const socket = await connect(room);
    socket.acknowledge = false;
    socket.subscribe("s", { shape: "itemsByList", args: { listId: "m" } });
    await waitFor(() => socket.frames.some((frame) => frame.type === "pokePart"), { message: "the first part" });
    // While paused mid-snapshot: changes before the scan's boundary (already
    // sent), after it (not read yet), rows entering and leaving the shape.
    await updateItem(worker, room, { id: "m-000001", title: "changed behind the scan" });
    await updateItem(worker, room, { id: "m-039990", title: "changed ahead of the scan" });
    await deleteItem(worker, room, "m-000002");
    await deleteItem(worker, room, "m-039991");
    await updateItem(worker, room, { id: "m-000003", listId: "elsewhere" });
    await updateItem(worker, room, { id: "m-039992", listId: "elsewhere" });
    await putItems(worker, room, [
      { id: "m-", listId: "m", title: "before every key" },
      { id: "m-999999", listId: "m", title: "after every key" },
    ]);
    socket.acknowledge = true;
    socket.ackNow();
    await waitFor(() => socket.pokes.find((candidate) => candidate.subs.includes("s")), { message: "the snapshot", timeoutMs: 60_000 });
    const expected = new Map(
      (await serverItems(worker, room))
        .filter((item) => item.listId === "m")
        .map((item) => [item.id, { id: item.id, listId: item.listId, title: item.title, rank: item.rank }] as const),
    );
    expect(socket.rows("s")).toEqual(expected);
    expect(socket.rows("s").get("m-000001")?.title).toBe("changed behind the scan");
    expect(socket.rows("s").get("m-039990")?.title).toBe("changed ahead of the scan");
    expect(socket.rows("s").has("m-000003")).toBe(false);
    // And the subscription goes on from the poke's cursor without a gap.
    await updateItem(worker, room, { id: "m-000004", title: "later" });
    await waitFor(() => socket.rows("s").get("m-000004")?.title === "later", { message: "a later change" });
  });

  test("other subscriptions of the socket and writes made meanwhile ride in the snapshot's poke", async () => {
    const room = "snapshot-others";
    await fill(room, "o", 30_000);
    await putItems(worker, room, { id: "small-1", listId: "small", title: "one" });
    const socket = await connect(room);
    socket.subscribe("small", { shape: "itemsByList", args: { listId: "small" } });
    await socket.nextPoke("small");
    socket.acknowledge = false;
    socket.subscribe("big", { shape: "itemsByList", args: { listId: "o" } });
    socket.subscribe("queued", { shape: "itemsByList", args: { listId: "small" } });
    await waitFor(() => socket.frames.some((frame) => frame.type === "pokePart"), { message: "the first part" });
    await updateItem(worker, room, { id: "small-1", title: "changed during the snapshot" });
    // A row the scan already sent (the first part holds the first page), changed in one column.
    await updateItem(worker, room, { id: "o-000001", title: "changed behind the scan" });
    socket.acknowledge = true;
    socket.ackNow();
    const poke = await waitFor(() => socket.pokes.find((candidate) => candidate.subs.includes("big")), { message: "the snapshot", timeoutMs: 60_000 });
    expect(poke.subs.sort()).toEqual(["big", "small"]);
    // The subscription the poke does not snapshot gets a patch of the one column…
    expect(poke.ops.filter((op) => op.sub === "small")).toEqual([{ op: "patch", sub: "small", key: "small-1", row: { id: "small-1", title: "changed during the snapshot" } }]);
    // …the one it snapshots a whole row (its page was read at its own moment), and never a patch.
    const big = socket.binding("big")!.group;
    expect(poke.blocks.filter(([group, kind]) => group === big && kind !== "p")).toEqual([]);
    expect(poke.ops.filter((op) => op.sub === "big" && op.key === "o-000001").at(-1)).toEqual({
      op: "put",
      sub: "big",
      key: "o-000001",
      row: { id: "o-000001", listId: "o", title: "changed behind the scan", rank: 1 },
    });
    const queued = await socket.nextPoke("queued");
    expect(socket.pokes.indexOf(queued)).toBeGreaterThan(socket.pokes.indexOf(poke));
    expect(socket.rows("queued").get("small-1")?.title).toBe("changed during the snapshot");
  });
});
