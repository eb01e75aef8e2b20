/**
 * The room, attacked at the protocol level: raw frames over a real socket to
 * the fixture room in real workerd. These defend the server half of the
 * invariants independently of the client library.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { MAX_FRAME_BYTES } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { deleteItem, putItems, roomCall, serverItems, startFixtureRoom, updateItem } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
const sockets: RawSocket[] = [];
let roomCounter = 0;
const freshRoom = () => `room-${Date.now().toString(36)}-${roomCounter++}`;

async function connect(room: string, options?: Parameters<typeof RawSocket.connect>[2]): Promise<RawSocket> {
  const socket = await RawSocket.connect(worker.host, room, options);
  sockets.push(socket);
  await waitFor(() => socket.frames.some((frame) => frame.type === "hello") || socket.closed, { message: "hello or close" });
  return socket;
}

beforeAll(async () => {
  worker = await startFixtureRoom();
});

afterAll(async () => {
  await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
  await worker?.stop();
});

describe("an existing Durable Object with withLunora mixed in", () => {
  test("keeps its own HTTP route, its own table and its own WebSocket protocol", async () => {
    const room = freshRoom();
    const before = await roomCall<{ n: number }>(worker, room, "/visits");
    const after = await roomCall<{ n: number }>(worker, room, "/visits");
    expect(after.n).toBe(before.n + 1);

    const own = new WebSocket(`ws://${worker.host}/rooms/${room}/own-ws`);
    await new Promise((resolve) => own.once("open", resolve));
    const reply = new Promise<string>((resolve) => own.once("message", (data) => resolve(data.toString())));
    own.send("typing");
    expect(await reply).toBe("own:typing");
    own.close();

    expect((await worker.fetch("/elsewhere")).status).toBe(404);
    expect(await (await worker.fetch("/elsewhere")).text()).toBe("worker's own 404");
  });

  test("a raw sql.exec write made by the room's own route reaches two subscribers", async () => {
    const room = freshRoom();
    const a = await connect(room);
    const b = await connect(room);
    a.subscribe("s", { shape: "itemsByList", args: { listId: "L" } });
    b.subscribe("s", { list: "items" });
    await a.nextPoke("s");
    await b.nextPoke("s");
    await putItems(worker, room, { id: "i1", listId: "L", title: "hello" });
    await waitFor(() => a.rows("s").has("i1") && b.rows("s").has("i1"), { message: "both subscribers got i1" });
    expect(a.rows("s").get("i1")).toEqual({ id: "i1", listId: "L", title: "hello", rank: 0 });
    expect(b.rows("s").get("i1")).toEqual({ id: "i1", listId: "L", title: "hello", rank: 0, secret: 0 });
  });
});

describe("change log", () => {
  test("every committed change is logged with strictly increasing seq, and a failed transaction logs nothing", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "a", listId: "L", title: "1" }, { id: "b", listId: "L", title: "2" }]);
    await updateItem(worker, room, { id: "a", title: "1b" });
    await deleteItem(worker, room, "b");
    expect(await roomCall(worker, room, "/items/put-then-fail", { id: "ghost", listId: "L", title: "x" })).toEqual({ ok: false });
    const log = await roomCall<Array<{ seq: number; table: string; id: string; op: string }>>(worker, room, "/log");
    expect(log.map((row) => [row.id, row.op])).toEqual([
      ["a", "insert"],
      ["b", "insert"],
      ["a", "update"],
      ["b", "delete"],
    ]);
    for (let i = 1; i < log.length; i++) expect(log[i].seq).toBeGreaterThan(log[i - 1].seq);
    expect((await serverItems(worker, room)).map((item) => item.id)).toEqual(["a"]);
  });
});

describe("shape membership", () => {
  test("an update moving a row out of a shape is a delete; moving it in is an insert", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "x", listId: "L1", title: "x" }, { id: "y", listId: "L2", title: "y" }]);
    const socket = await connect(room);
    socket.subscribe("l1", { shape: "itemsByList", args: { listId: "L1" } });
    const first = await socket.nextPoke("l1");
    expect(first.resets).toEqual(["l1"]);
    expect([...socket.rows("l1").keys()]).toEqual(["x"]);

    let seen = socket.pokes.length;
    await updateItem(worker, room, { id: "x", listId: "L2" });
    const out = await socket.nextPoke("l1", seen);
    expect(out.ops).toEqual([{ op: "del", sub: "l1", key: "x" }]);

    seen = socket.pokes.length;
    await updateItem(worker, room, { id: "y", listId: "L1" });
    const into = await socket.nextPoke("l1", seen);
    expect(into.ops).toEqual([{ op: "put", sub: "l1", key: "y", row: { id: "y", listId: "L1", title: "y", rank: 0 } }]);
  });

  test("a change to a column outside the projection sends nothing; the read rule still applies", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "p", listId: "L", title: "p" });
    const admin = await connect(room, { token: "user:root:admin" });
    const user = await connect(room, { token: "user:bob" });
    admin.subscribe("s", { shape: "itemsByList", args: { listId: "L" } });
    user.subscribe("s", { shape: "itemsByList", args: { listId: "L" } });
    await admin.nextPoke("s");
    await user.nextPoke("s");
    const adminSeen = admin.pokes.length;
    const userSeen = user.pokes.length;
    await updateItem(worker, room, { id: "p", secret: 1 });
    // bob loses the row (read rule), the admin's projection did not change.
    const userPoke = await user.nextPoke("s", userSeen);
    expect(userPoke.ops).toEqual([{ op: "del", sub: "s", key: "p" }]);
    // A later visible change proves the admin's socket had nothing in between.
    await putItems(worker, room, { id: "q", listId: "L", title: "q" });
    const adminPoke = await admin.nextPoke("s", adminSeen);
    expect(adminPoke.ops.map((op) => op.key)).toEqual(["q"]);
  });

  test("a client never receives rows its identity may not read", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "open", listId: "L", title: "o" }, { id: "hidden", listId: "L", title: "h", secret: 1 }]);
    await roomCall(worker, room, "/notes/put", { id: "n-alice", ownerId: "alice", body: "mine" });
    await roomCall(worker, room, "/notes/put", { id: "n-bob", ownerId: "bob", body: "his" });
    const alice = await connect(room, { token: "user:alice" });
    alice.subscribe("items", { list: "items" });
    alice.subscribe("notes", { list: "notes" });
    alice.subscribe("rank", { shape: "itemsRankAtLeast", args: { min: -100 } });
    await alice.nextPoke("items");
    await alice.nextPoke("notes");
    await alice.nextPoke("rank");
    await putItems(worker, room, { id: "hidden2", listId: "L", title: "h2", secret: 1 });
    await roomCall(worker, room, "/notes/put", { id: "n-bob2", ownerId: "bob", body: "his too" });
    await putItems(worker, room, { id: "open2", listId: "L", title: "o2" });
    await waitFor(() => alice.rows("items").has("open2"));
    expect([...alice.rows("items").keys()].sort()).toEqual(["open", "open2"]);
    expect([...alice.rows("rank").keys()].sort()).toEqual(["open", "open2"]);
    expect([...alice.rows("notes").keys()]).toEqual(["n-alice"]);
    expect(alice.raw.join("\n")).not.toMatch(/hidden|n-bob/);
  });
});

describe("resume", () => {
  test("a client offline while 2,000 changes hit 200 keys receives only those 200 keys' final state", async () => {
    const room = freshRoom();
    const items = Array.from({ length: 300 }, (_, i) => ({ id: `k-${i}`, listId: "k", title: "start", rank: 0 }));
    await putItems(worker, room, items);
    const first = await connect(room);
    first.subscribe("s", { shape: "itemsByList", args: { listId: "k" } });
    await first.nextPoke("s");
    const cursor = first.cursor("s")!;
    await first.close();

    await roomCall(worker, room, "/items/churn", { count: 2000, keys: 200, listId: "k" });

    const again = await connect(room);
    again.subscribe("s", { shape: "itemsByList", args: { listId: "k" } }, cursor, first.rows("s"));
    const poke = await again.nextPoke("s");
    expect(poke.resets).toEqual([]);
    expect(poke.ops).toHaveLength(200);
    expect(new Set(poke.ops.map((op) => op.key)).size).toBe(200);
    const server = new Map((await serverItems(worker, room)).map((item) => [item.id, item]));
    // Each key's updates changed title and rank: a patch of those two (the key column, not listId), final values.
    for (const op of poke.ops) {
      expect(op.op).toBe("patch");
      if (op.op === "patch") expect(op.row).toEqual({ id: op.key, title: server.get(op.key as string)!.title, rank: 10 });
    }
    expect(poke.blocks.map(([, kind]) => kind)).toEqual(["u"]);
    const expected = [...server.values()].filter((item) => item.listId === "k").map((item) => [item.id, { id: item.id, listId: "k", title: item.title, rank: item.rank }]);
    expect(again.rows("s")).toEqual(new Map(expected as Array<[string, Record<string, unknown>]>));
  });

  test("a cursor older than the trimmed log gets a reset, after which the rows equal the server's", async () => {
    const room = freshRoom();
    await putItems(worker, room, Array.from({ length: 50 }, (_, i) => ({ id: `t-${i}`, listId: "t", title: "x" })));
    const first = await connect(room);
    first.subscribe("s", { shape: "itemsByList", args: { listId: "t" } });
    await first.nextPoke("s");
    const cursor = first.cursor("s")!;
    await first.close();
    await roomCall(worker, room, "/items/churn", { count: 800, keys: 40, listId: "t" });
    await deleteItem(worker, room, "t-45");
    const { trimmedThrough } = await roomCall<{ trimmedThrough: number }>(worker, room, "/lunora/sweep");
    expect(trimmedThrough).toBeGreaterThan(cursor.seq);

    const again = await connect(room);
    again.subscribe("s", { shape: "itemsByList", args: { listId: "t" } }, cursor);
    const poke = await again.nextPoke("s");
    expect(poke.resets).toEqual(["s"]);
    const server = (await serverItems(worker, room)).filter((item) => item.listId === "t");
    const expected = new Map(server.map((item) => [item.id, { id: item.id, listId: item.listId, title: item.title, rank: item.rank }] as const));
    expect(again.rows("s")).toEqual(expected);
  });

  test("a cursor from another epoch gets a reset; connected subscribers are reset at once", async () => {
    const room = freshRoom();
    await putItems(worker, room, { id: "e1", listId: "e", title: "x" });
    const connected = await connect(room);
    connected.subscribe("s", { list: "items" });
    const initial = await connected.nextPoke("s");
    const oldCursor = initial.cursor;
    const seen = connected.pokes.length;
    const { epoch } = await roomCall<{ epoch: string }>(worker, room, "/lunora/reset-epoch");
    expect(epoch).not.toBe(oldCursor.epoch);
    const reset = await connected.nextPoke("s", seen);
    expect(reset.resets).toEqual(["s"]);
    expect(reset.cursor.epoch).toBe(epoch);
    expect([...connected.rows("s").keys()]).toEqual(["e1"]);

    const resumed = await connect(room);
    resumed.subscribe("s", { list: "items" }, oldCursor);
    const poke = await resumed.nextPoke("s");
    expect(poke.resets).toEqual(["s"]);
    expect([...resumed.rows("s").keys()]).toEqual(["e1"]);
  });

  test("restart of the room: a resumed subscription gets only what changed", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "r1", listId: "r", title: "1" }, { id: "r2", listId: "r", title: "2" }]);
    const before = await connect(room);
    before.subscribe("s", { shape: "itemsByList", args: { listId: "r" } });
    await before.nextPoke("s");
    const cursor = before.cursor("s")!;
    await worker.restart();
    await waitFor(() => before.closed, { message: "socket dropped by the restart" });
    await updateItem(worker, room, { id: "r2", title: "2b" });
    const after = await connect(room);
    after.subscribe("s", { shape: "itemsByList", args: { listId: "r" } }, cursor, before.rows("s"));
    const poke = await after.nextPoke("s");
    expect(poke.resets).toEqual([]);
    expect(poke.ops).toEqual([{ op: "patch", sub: "s", key: "r2", row: { id: "r2", title: "2b" } }]);
    // The restarted room binds the subscription to the same group id.
    expect(poke.bind).toEqual([before.binding("s")]);
    expect(after.rows("s").get("r2")).toEqual({ id: "r2", listId: "r", title: "2b", rank: 0 });
  });
});

describe("framing", () => {
  test("a poke over 900,000 bytes is split into parts, each under the bound, and carries every row once", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("s", { shape: "itemsByList", args: { listId: "big" } });
    await socket.nextPoke("s");
    const seen = socket.pokes.length;
    const text = "x".repeat(6_000);
    await putItems(worker, room, Array.from({ length: 400 }, (_, i) => ({ id: `big-${i}`, listId: "big", title: `${i}${text}` })));
    const poke = await socket.nextPoke("s", seen);
    expect(poke.parts).toBeGreaterThan(2);
    expect(poke.ops).toHaveLength(400);
    for (const frame of socket.raw) expect(Buffer.byteLength(frame)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(Math.max(...socket.raw.map((frame) => Buffer.byteLength(frame)))).toBeGreaterThan(MAX_FRAME_BYTES / 2);
  });
});

describe("a row larger than a frame", () => {
  test("ends the subscriptions that would carry it with MESSAGE_TOO_LARGE, at flush and at snapshot; others go on", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("all", { list: "items" });
    socket.subscribe("other", { shape: "itemsByList", args: { listId: "small" } });
    await socket.nextPoke("all");
    await socket.nextPoke("other");
    const errorsAtStart = socket.errors.length;
    await putItems(worker, room, { id: "huge", listId: "huge", title: "h".repeat(950_000) });
    const atFlush = await socket.nextError(errorsAtStart);
    expect(atFlush).toMatchObject({ sub: "all", error: { code: "MESSAGE_TOO_LARGE" } });
    expect(socket.rows("all").has("huge")).toBe(false);

    // A new subscription whose snapshot would contain it: its poke is abandoned.
    const errorsBefore = socket.errors.length;
    socket.subscribe("again", { list: "items" });
    const atSnapshot = await socket.nextError(errorsBefore);
    expect(atSnapshot).toMatchObject({ sub: "again", error: { code: "MESSAGE_TOO_LARGE" } });

    const seen = socket.pokes.length;
    await putItems(worker, room, { id: "s1", listId: "small", title: "fine" });
    const poke = await socket.nextPoke("other", seen);
    expect(poke.subs).toEqual(["other"]);
    expect(poke.ops.map((op) => op.key)).toEqual(["s1"]);
    expect(socket.closed).toBeNull();
  });
});

describe("a snapshot abandoned for a row larger than a frame", () => {
  // A subscribe that arrives while a snapshot streams waits for its poke to
  // end (one poke open per socket). The abandon path returned without
  // starting what waited, so that subscription was never answered.
  test("still answers the subscribes that waited for it", async () => {
    const room = freshRoom();
    // 1,200 rows (~3.6 MB) before the huge one in key order, read 500 a page:
    // the snapshot stops at its 2 MiB window after two pages while the reader
    // does not acknowledge, with the huge row still unread.
    const filler = "f".repeat(3_000);
    for (let batch = 0; batch < 3; batch++) {
      await putItems(worker, room, Array.from({ length: 400 }, (_, i) => ({ id: `a-${String(batch * 400 + i).padStart(4, "0")}`, listId: "fill", title: `${i}${filler}` })));
    }
    await putItems(worker, room, { id: "huge", listId: "huge", title: "h".repeat(950_000) });
    const socket = await connect(room);
    socket.acknowledge = false;
    const errorsBefore = socket.errors.length;
    socket.subscribe("all", { list: "items" });
    await waitFor(() => socket.unacknowledged > 2 * 1024 * 1024, { message: "the snapshot filled its window" });
    // A list (no async args check), so it is queued before the ack below is read.
    socket.subscribe("waiter", { list: "notes" });
    const seen = socket.pokes.length;
    socket.acknowledge = true;
    socket.ackNow();
    const abandoned = await socket.nextError(errorsBefore);
    expect(abandoned).toMatchObject({ sub: "all", error: { code: "MESSAGE_TOO_LARGE" } });
    const answer = await socket.nextPoke("waiter", seen);
    expect(answer.resets).toEqual(["waiter"]);
    expect(answer.ops).toEqual([]);
    expect(socket.closed).toBeNull();
  });
});

describe("bad input gets a coded error and harms nobody else", () => {
  test("unknown shape, invalid args (valibot, zod, arktype), denied reads: errors on that subscription only", async () => {
    const room = freshRoom();
    const socket = await connect(room, { token: "user:blocked" });
    socket.subscribe("good", { shape: "itemsByList", args: { listId: "g" } });
    await socket.nextPoke("good");
    const cases: Array<[string, Parameters<RawSocket["subscribe"]>[1], string]> = [
      ["unknown", { shape: "noSuchShape" }, "SHAPE_NOT_FOUND"],
      ["tableName", { list: "__cdc_log" }, "SHAPE_NOT_FOUND"],
      ["proto", { list: "__proto__" }, "SHAPE_NOT_FOUND"],
      ["ctor", { shape: "constructor" }, "SHAPE_NOT_FOUND"],
      ["valibot", { shape: "itemsByList", args: { listId: 42 } }, "INVALID_ARGS"],
      ["valibotMissing", { shape: "itemsByList" }, "INVALID_ARGS"],
      ["zod", { shape: "itemsRankAtLeast", args: { min: "1; DROP TABLE items" } }, "INVALID_ARGS"],
      ["arktype", { shape: "itemsByTitle", args: { title: ["a"] } }, "INVALID_ARGS"],
      ["denied", { list: "notes" }, "FORBIDDEN"],
      ["whereDenied", { shape: "ownerOnly" }, "FORBIDDEN"],
    ];
    for (const [id, source, code] of cases) {
      const before = socket.errors.length;
      socket.subscribe(id, source);
      const error = await socket.nextError(before);
      expect(error.sub).toBe(id);
      expect(error.error.code).toBe(code);
    }
    const seen = socket.pokes.length;
    await putItems(worker, room, { id: "g1", listId: "g", title: "still here" });
    const poke = await socket.nextPoke("good", seen);
    expect(poke.subs).toEqual(["good"]);
    expect(poke.ops.map((op) => op.key)).toEqual(["g1"]);
  });

  test("args that try to escape the predicate are plain values", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "a", listId: "L", title: "t" }]);
    const socket = await connect(room);
    for (const [index, listId] of ["1=1) OR (1=1", "' OR '1'='1", "L' --", '"listId"'].entries()) {
      socket.subscribe(`s${index}`, { shape: "itemsByList", args: { listId } });
      const poke = await socket.nextPoke(`s${index}`);
      expect(poke.ops).toEqual([]);
    }
    expect((await serverItems(worker, room)).length).toBe(1);
  });

  test("malformed JSON, unknown types, wrong field types and oversize frames get coded errors; other clients go on", async () => {
    const room = freshRoom();
    const bystander = await connect(room);
    bystander.subscribe("s", { list: "items" });
    await bystander.nextPoke("s");
    const attacker = await connect(room);
    const bad: Array<[string, string]> = [
      ["{not json", "PROTOCOL_ERROR"],
      [JSON.stringify({ type: "explode" }), "PROTOCOL_ERROR"],
      [JSON.stringify({ type: "subscribe", id: 7, source: { list: "items" } }), "PROTOCOL_ERROR"],
      [JSON.stringify({ type: "subscribe", id: "x", source: { list: "items", sql: "1=1" } }), "PROTOCOL_ERROR"],
      [JSON.stringify({ type: "subscribe", id: "x".repeat(1000), source: { list: "items" } }), "PROTOCOL_ERROR"],
      [JSON.stringify([1, 2, 3]), "PROTOCOL_ERROR"],
      ["null", "PROTOCOL_ERROR"],
      [JSON.stringify({ type: "subscribe", id: "big", source: { shape: "itemsByList", args: { listId: "y".repeat(1_000_100) } } }), "MESSAGE_TOO_LARGE"],
    ];
    for (const [frame, code] of bad) {
      const before = attacker.errors.length;
      attacker.send(frame);
      const error = await attacker.nextError(before);
      expect(error.error.code).toBe(code);
      expect(error.sub).toBeUndefined();
    }
    expect(attacker.closed).toBeNull();
    const seen = bystander.pokes.length;
    await putItems(worker, room, { id: "after", listId: "L", title: "ok" });
    expect((await bystander.nextPoke("s", seen)).ops.map((op) => op.key)).toEqual(["after"]);
  });

  test("a socket that keeps sending garbage is closed with 4008; others are not", async () => {
    const room = freshRoom();
    const bystander = await connect(room);
    const attacker = await connect(room);
    for (let i = 0; i < 150; i++) attacker.send("garbage");
    await waitFor(() => attacker.closed, { message: "attacker closed" });
    expect(attacker.closed!.code).toBe(4008);
    bystander.subscribe("s", { list: "items" });
    await bystander.nextPoke("s");
    expect(bystander.closed).toBeNull();
  });

  test("more subscriptions than the bound get QUOTA_EXCEEDED, the first ones keep working", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    for (let i = 0; i < 100; i++) socket.subscribe(`s${i}`, { shape: "itemsByList", args: { listId: `l${i}` } });
    await waitFor(() => socket.pokes.length === 100, { message: "100 subscriptions served" });
    socket.subscribe("one-too-many", { list: "items" });
    const error = await socket.nextError();
    expect(error).toMatchObject({ sub: "one-too-many", error: { code: "QUOTA_EXCEEDED" } });
    const seen = socket.pokes.length;
    await putItems(worker, room, { id: "z", listId: "l99", title: "z" });
    expect((await socket.nextPoke("s99", seen)).ops.map((op) => op.key)).toEqual(["z"]);
  });
});

describe("authentication", () => {
  test("no token: UNAUTHENTICATED and close 4001", async () => {
    const socket = await connect(freshRoom(), { token: null });
    await waitFor(() => socket.closed, { message: "closed" });
    expect(socket.closed!.code).toBe(4001);
    expect(socket.errors[0].error.code).toBe("UNAUTHENTICATED");
  });

  test("another protocol version: PROTOCOL_VERSION_MISMATCH and close 4002", async () => {
    const socket = await connect(freshRoom(), { version: 99 });
    await waitFor(() => socket.closed, { message: "closed" });
    expect(socket.closed!.code).toBe(4002);
    expect(socket.errors[0].error.code).toBe("PROTOCOL_VERSION_MISMATCH");
  });

  test("an expired token closes the socket with 4001 on its next frame", async () => {
    const room = freshRoom();
    const expiresAt = Date.now() + 1_000;
    const socket = await connect(room, { token: `user:eve:exp=${expiresAt}` });
    socket.subscribe("s", { list: "items" });
    await socket.nextPoke("s");
    await waitFor(() => Date.now() > expiresAt + 50, { timeoutMs: 5_000 });
    socket.subscribe("t", { list: "items" });
    await waitFor(() => socket.closed, { message: "closed after expiry" });
    expect(socket.closed!.code).toBe(4001);
    expect(socket.errors.at(-1)!.error).toMatchObject({ code: "UNAUTHENTICATED", message: "token expired" });
  });
});
