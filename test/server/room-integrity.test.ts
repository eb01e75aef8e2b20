/**
 * The room's engine under inputs its own tests did not think of (issue
 * "Room integrity"), over real sockets against real workerd:
 * - a write inside the room's own async transaction is published only if it
 *   commits, and never makes a later committed write disappear;
 * - `ack` cannot switch flow control off;
 * - an expired token gets nothing from a reset;
 * - subscription groups are keyed exactly (column names with commas);
 * - subscription ids that are Object.prototype names are ordinary ids;
 * - shape args are bounded and stored validated;
 * - a numeric and a string user id are different identities.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ACK_EVERY_CHARS, CLOSE_CODES } from "../../src/protocol/index.js";
import { startLocalWorker, type LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { putItems, roomCall, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

const here = path.dirname(fileURLToPath(import.meta.url));
let worker: LocalWorker;
let guarded: LocalWorker;
const sockets: RawSocket[] = [];
let counter = 0;
const freshRoom = () => `integrity-${Date.now().toString(36)}-${counter++}`;

beforeAll(async () => {
  worker = await startFixtureRoom();
  guarded = await startLocalWorker({ config: path.join(here, "../fixtures/guarded/wrangler.jsonc") });
});
afterAll(async () => {
  await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
  await worker?.stop();
  await guarded?.stop();
});

async function connect(room: string, options: Parameters<typeof RawSocket.connect>[2] = {}, on = worker): Promise<RawSocket> {
  const socket = await RawSocket.connect(on.host, room, options);
  sockets.push(socket);
  await waitFor(() => socket.frames.some((frame) => frame.type === "hello") || socket.closed, { message: "hello" });
  return socket;
}

describe("the room's own async transactions", () => {
  test("a ctx.db write that rolls back after an await is never published, and the next committed write is delivered", async () => {
    const room = freshRoom();
    const socket = await connect(room, { token: "user:admin:admin" });
    socket.subscribe("s", { list: "items" });
    await socket.nextPoke("s");
    const rolledBack = randomUUID();
    expect(await roomCall(worker, room, "/items/put-in-async-transaction", { id: rolledBack, listId: "L", title: "never committed", fail: true })).toEqual({ ok: false });
    const committed = randomUUID();
    expect(await roomCall(worker, room, "/items/put-in-async-transaction", { id: committed, listId: "L", title: "committed" })).toEqual({ ok: true });
    await putItems(worker, room, { id: "plain", listId: "L", title: "plain write after" });
    await waitFor(() => socket.rows("s").has("plain"), { message: "the plain write" });
    expect(socket.rows("s").has(committed)).toBe(true);
    expect(socket.rows("s").has(rolledBack)).toBe(false);
    expect(socket.raw.join("\n")).not.toContain("never committed");
  });
});

describe("refreshSchema() inside the room's own async transaction", () => {
  const byId = (rows: Array<Record<string, unknown>>) => rows.sort((x, y) => String(x.id).localeCompare(String(y.id)));
  const commasRows = (room: string) =>
    roomCall<Array<Record<string, unknown>>>(worker, room, "/sql", { statement: `SELECT * FROM commas` }).then(byId);

  async function subscribedToAllColumns(room: string): Promise<RawSocket> {
    await roomCall(worker, room, "/commas/put", { id: "k", ab: "AB", c: "C", a: "A", bc: "BC" });
    const socket = await connect(room);
    socket.subscribe("all", { shape: "commasAll", args: {} });
    await socket.nextPoke("all");
    expect(socket.binding("all")!.columns).not.toContain("d");
    return socket;
  }

  test("a migration that rolls back after refreshSchema() sends nothing of it: no new binding, no uncommitted rows", async () => {
    const room = freshRoom();
    const socket = await subscribedToAllColumns(room);
    const migrated = await roomCall(worker, room, "/lunora/migrate-in-transaction", {
      statements: [`ALTER TABLE commas ADD COLUMN d TEXT`, `UPDATE commas SET d = 'never committed'`],
      fail: true,
    });
    expect(migrated).toEqual({ ok: false });
    // A later write: once it arrives, anything the migration sent has arrived too.
    await roomCall(worker, room, "/commas/put", { id: "k2", ab: "AB2", c: "C2", a: "A2", bc: "BC2" });
    await waitFor(() => socket.rows("all").has("k2"), { message: "the later write" });
    expect(socket.binding("all")!.columns).not.toContain("d");
    expect(socket.raw.join("\n")).not.toContain("never committed");
    expect(Object.keys(socket.rows("all").get("k")!).sort()).toEqual(["a", "a,b", "b,c", "c", "id"]);
    expect(byId([...socket.rows("all").values()])).toEqual(await commasRows(room));
    expect(socket.closed).toBeNull();
  });

  test("a migration that commits is applied at its end: the subscription is bound anew and holds exactly the committed rows", async () => {
    const room = freshRoom();
    const socket = await subscribedToAllColumns(room);
    const migrated = await roomCall(worker, room, "/lunora/migrate-in-transaction", {
      statements: [`ALTER TABLE commas ADD COLUMN d TEXT`, `INSERT INTO commas (id, c, d) VALUES ('n1', 'C1', 'added with d')`],
    });
    expect(migrated).toEqual({ ok: true });
    await waitFor(() => socket.binding("all")?.columns.includes("d") && socket.rows("all").has("n1"), { message: "bound to the new columns" });
    await roomCall(worker, room, "/commas/put", { id: "k2", ab: "AB2", c: "C2", a: "A2", bc: "BC2" });
    await waitFor(() => socket.rows("all").has("k2"), { message: "the later write" });
    expect(socket.rows("all").get("n1")!.d).toBe("added with d");
    expect(byId([...socket.rows("all").values()])).toEqual(await commasRows(room));
    expect(socket.closed).toBeNull();
  });
});

describe("resetEpoch() inside the room's own async transaction", () => {
  for (const fail of [true, false]) {
    test(`runs when the transaction has ${fail ? "rolled back" : "committed"}: the reset carries committed rows only`, async () => {
      const room = freshRoom();
      await putItems(worker, room, { id: "before", listId: "L", title: "before" });
      const socket = await connect(room);
      socket.subscribe("s", { list: "items" });
      await socket.nextPoke("s");
      const epochBefore = socket.cursor("s")!.epoch;
      const answer = await roomCall<{ ok: boolean; epoch: string }>(worker, room, "/lunora/reset-epoch-in-transaction", {
        item: { id: "inside", listId: "L", title: "written inside the transaction" },
        fail,
      });
      expect(answer.ok).toBe(!fail);
      expect(answer.epoch).not.toBe(epochBefore);
      await putItems(worker, room, { id: "after", listId: "L", title: "after" });
      await waitFor(() => socket.rows("s").has("after"), { message: "the later write" });
      expect(socket.cursor("s")!.epoch).toBe(answer.epoch);
      const server = await roomCall<Array<{ id: string }>>(worker, room, "/items");
      expect([...socket.rows("s").keys()].sort()).toEqual(server.map((item) => item.id).sort());
      expect(socket.rows("s").has("inside")).toBe(!fail);
      if (fail) expect(socket.raw.join("\n")).not.toContain("written inside the transaction");
    });
  }
});

describe("a published write that rolls back (the room flushed inside its own transaction)", () => {
  const publishThenRollBack = async (room: string, item: { id: string; listId: string; title: string }) => {
    const response = await worker.fetch(`/rpc/${encodeURIComponent(room)}/publish-then-roll-back`, { method: "POST", body: JSON.stringify(item) });
    expect(response.ok).toBe(true);
  };
  const hellos = (socket: RawSocket) => socket.frames.filter((frame) => frame.type === "hello").length;
  const outcomeOf = (socket: RawSocket, clientSeq: number) => socket.pokes.flatMap((poke) => poke.mutations ?? []).find((outcome) => outcome.clientSeq === clientSeq);
  const rejectedCreate = (clientSeq: number) => ({ clientSeq, name: "items:create", args: { id: randomUUID(), listId: "L", title: " " } });
  /**
   * Pushes a write of no synced row (the flush after it finds the log behind
   * what was published: a new epoch), then another after the new hello;
   * resolves once the second's outcome arrived, so the first's must have.
   */
  const pushAcrossNewEpoch = async (writer: RawSocket) => {
    const clientId = randomUUID();
    writer.send({ type: "push", clientId, mutations: [rejectedCreate(1)] });
    await waitFor(() => hellos(writer) === 2, { message: "the new epoch's hello" });
    writer.send({ type: "push", clientId, mutations: [rejectedCreate(2)] });
    await waitFor(() => outcomeOf(writer, 2), { message: "the second outcome" });
  };

  /** A socket subscribed to `items` that has received the row `phantom` of a write the room then rolled back. */
  const watchRolledBackPublish = async (room: string) => {
    const socket = await connect(room);
    socket.subscribe("s", { list: "items" });
    await socket.nextPoke("s");
    await publishThenRollBack(room, { id: "phantom", listId: "L", title: "rolled back" });
    await waitFor(() => socket.rows("s").has("phantom"), { message: "the published write" });
    return socket;
  };

  test("outcomes taken by the flush that starts a new epoch reach their socket, in the reset poke that carries their data", async () => {
    const room = freshRoom();
    const socket = await watchRolledBackPublish(room);
    await pushAcrossNewEpoch(socket);
    expect(outcomeOf(socket, 1)).toMatchObject({ clientSeq: 1, status: "rejected", error: { code: "INVALID_ARGS" } });
    const carrying = socket.pokes.find((poke) => poke.mutations?.some((outcome) => outcome.clientSeq === 1))!;
    expect(carrying.resets).toEqual(["s"]);
    expect(socket.rows("s").has("phantom")).toBe(false);
  });

  test("a socket without subscriptions gets the outcomes of such a flush after the new hello", async () => {
    const room = freshRoom();
    const writer = await connect(room);
    await watchRolledBackPublish(room);
    await pushAcrossNewEpoch(writer);
    expect(outcomeOf(writer, 1)).toMatchObject({ clientSeq: 1, status: "rejected" });
  });

  test("a write committed after the rollback, before any flush, is delivered (its log seq reuses the rolled-back one)", async () => {
    const room = freshRoom();
    const socket = await watchRolledBackPublish(room);
    const id = randomUUID();
    socket.send({ type: "push", clientId: randomUUID(), mutations: [{ clientSeq: 1, name: "items:create", args: { id, listId: "L", title: "after the rollback" } }] });
    await waitFor(() => outcomeOf(socket, 1), { message: "the outcome" });
    await putItems(worker, room, { id: "later", listId: "L", title: "a later write" });
    await waitFor(() => socket.rows("s").has("later"), { message: "the later write" });
    const server = await roomCall<Array<{ id: string }>>(worker, room, "/items");
    expect([...socket.rows("s").keys()].sort()).toEqual(server.map((item) => item.id).sort());
    expect(socket.rows("s").has(id)).toBe(true);
  });
});

describe("flow control cannot be switched off by the client", () => {
  test("an ack for text the room never sent is a protocol error and the reader is still bounded", async () => {
    const room = freshRoom();
    await putItems(worker, room, Array.from({ length: 200 }, (_, i) => ({ id: `big-${i}`, listId: "L", title: "x".repeat(4_000) })));
    const reader = await connect(room);
    reader.acknowledge = false;
    reader.send({ type: "ack", received: 1e15 });
    const error = await reader.nextError(0);
    expect(error.error.code).toBe("PROTOCOL_ERROR");
    reader.subscribe("s", { list: "items" });
    await reader.nextPoke("s");
    // ~800 kB unacknowledged per snapshot; pushing 8 MiB through it must close it.
    for (let round = 0; round < 40 && reader.closed === null; round++) {
      reader.send({ type: "ack", received: 1e15 });
      await putItems(worker, room, Array.from({ length: 200 }, (_, i) => ({ id: `big-${i}`, listId: "L", title: `${round}`.repeat(4_000) })));
    }
    await waitFor(() => reader.closed, { message: "the reader closed as a slow consumer" });
    expect(reader.closed!.code).toBe(CLOSE_CODES.SLOW_CONSUMER);
  });

  test("an honest reader that acknowledges what it received is never closed", async () => {
    const room = freshRoom();
    await putItems(worker, room, Array.from({ length: 200 }, (_, i) => ({ id: `big-${i}`, listId: "L", title: "y".repeat(4_000) })));
    const reader = await connect(room);
    reader.subscribe("s", { list: "items" });
    await reader.nextPoke("s");
    for (let round = 0; round < 15; round++) {
      await putItems(worker, room, Array.from({ length: 200 }, (_, i) => ({ id: `big-${i}`, listId: "L", title: `r${round}`.repeat(2_000) })));
    }
    await waitFor(() => reader.rows("s").get("big-199")?.title === "r14".repeat(2_000), { message: "all pokes" });
    expect(reader.closed).toBeNull();
    expect(reader.errors).toEqual([]);
    expect(reader.raw.join("").length).toBeGreaterThan(8 * ACK_EVERY_CHARS);
  });
});

describe("expired tokens and resets", () => {
  test("after resetEpoch an expired socket is closed, not sent a snapshot", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "r1", listId: "L", title: "before reset" });
    const expiresAt = Date.now() + 1_500;
    const socket = await connect(room, { token: `user:eve:exp=${expiresAt}` });
    socket.subscribe("s", { list: "items" });
    await socket.nextPoke("s");
    const seenPokes = socket.pokes.length;
    await waitFor(() => Date.now() > expiresAt + 50 || undefined, { message: "expiry", timeoutMs: 5_000 });
    await roomCall(worker, room, "/lunora/reset-epoch");
    await waitFor(() => socket.closed, { message: "closed" });
    expect(socket.closed!.code).toBe(CLOSE_CODES.UNAUTHENTICATED);
    expect(socket.pokes.length).toBe(seenPokes);
  });
});

describe("subscriptions are keyed exactly", () => {
  test("two projections that differ only by a comma inside a column name get their own ops", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("ab_c", { shape: "commasABthenC" });
    socket.subscribe("a_bc", { shape: "commasAthenBC" });
    await socket.nextPoke("ab_c");
    await socket.nextPoke("a_bc");
    await roomCall(worker, room, "/commas/put", { id: "k", ab: "AB", c: "C", a: "A", bc: "BC" });
    await waitFor(() => socket.rows("ab_c").has("k") && socket.rows("a_bc").has("k"), { message: "both rows" });
    expect(socket.rows("ab_c").get("k")).toEqual({ id: "k", "a,b": "AB", c: "C" });
    expect(socket.rows("a_bc").get("k")).toEqual({ id: "k", a: "A", "b,c": "BC" });
  });

  test("ids named like Object.prototype members are ordinary subscriptions", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const ids = ["__proto__", "constructor", "toString", "hasOwnProperty", "control"];
    for (const id of ids) socket.subscribe(id, { shape: "itemsByList", args: { listId: "P" } });
    await Promise.all(ids.map((id) => socket.nextPoke(id)));
    const before = socket.pokes.length;
    await putItems(worker, room, { id: "p1", listId: "P", title: "for every id" });
    await waitFor(() => ids.every((id) => socket.rows(id).has("p1")), { message: "every subscription got the row" });
    // Unsubscribing one does not disturb the others.
    socket.send({ type: "unsubscribe", id: "constructor" });
    // Frames of one socket are handled in order: once this snapshot is in, the unsubscribe was handled.
    socket.subscribe("marker", { shape: "itemsByList", args: { listId: "none" } });
    await socket.nextPoke("marker");
    await putItems(worker, room, { id: "p2", listId: "P", title: "second" });
    await waitFor(() => socket.pokes.slice(before).some((poke) => poke.ops.some((op) => op.key === "p2")), { message: "second row" });
    const last = socket.pokes.at(-1)!;
    expect(new Set(last.subs)).toEqual(new Set([...ids.filter((id) => id !== "constructor"), "marker"]));
    expect(socket.errors).toEqual([]);
  });
});

describe("shape args", () => {
  test("over-deep or oversized args are INVALID_ARGS, and the socket goes on", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const deep = `${'{"d":'.repeat(100_000)}"x"${"}".repeat(100_000)}`;
    socket.send(`{"type":"subscribe","id":"deep","source":{"shape":"itemsByList","args":{"listId":"L","junk":${deep}}}}`);
    socket.subscribe("wide", { shape: "itemsByList", args: { listId: "L", junk: Array.from({ length: 2_000 }, (_, i) => `v${i}`) } });
    await waitFor(() => socket.errors.length >= 2, { message: "two errors" });
    expect(socket.errors.map((error) => [error.sub, error.error.code]).sort()).toEqual([
      ["deep", "INVALID_ARGS"],
      ["wide", "INVALID_ARGS"],
    ]);
    socket.subscribe("fine", { shape: "itemsByList", args: { listId: "L", junk: "stripped by the schema" } });
    await socket.nextPoke("fine");
  });
});

describe("identities", () => {
  test("the default identify keeps user 5 and user \"5\" apart: each has its own watermark", async () => {
    const room = freshRoom();
    const clientId = randomUUID();
    const asNumber = await connect(room, { token: "n5", party: "room" }, guarded);
    const asString = await connect(room, { token: "s5", party: "room" }, guarded);
    for (const [socket, id] of [
      [asNumber, "by-number"],
      [asString, "by-string"],
    ] as const) {
      const seen = socket.pokes.length;
      socket.send({ type: "push", clientId, mutations: [{ clientSeq: 1, name: "posts:add", args: { id } }] });
      await waitFor(() => socket.pokes.slice(seen).find((poke) => poke.mutations?.length), { message: "outcome" });
    }
    const posts = (await (await guarded.fetch(`/rooms/${room}/posts`)).json()) as Array<{ id: string; body: string }>;
    expect(posts).toEqual([
      { id: "by-number", body: "number:5" },
      { id: "by-string", body: "string:5" },
    ]);
  });
});
