/**
 * Room integrity: values and constraints (issue 18): values reach clients exactly as SQLite stores
 * them, the JavaScript predicate engine agrees with SQL on them, REPLACE is
 * captured whole, constraint failures are coded rejections, wide tables with
 * odd column names sync, and writer bookkeeping is bounded per identity.
 * Real workerd, real sockets; writes through the room's raw SQL route and
 * through mutators.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import type { Mutation } from "../../src/protocol/index.js";
import type { AssembledPoke, RawSocket } from "../helpers/raw-socket.js";
import { roomCall } from "../helpers/fixture-room.js";
import { useRawFixtureRoom } from "../helpers/raw-fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { WIDE_COLUMNS } from "../fixtures/room/wide-columns.js";

const fixture = useRawFixtureRoom("integrity");
const { freshRoom, connect } = fixture;

/** Raw SQL of the room's own code (plain `sql.exec`, no ctx.db). */
const exec = (room: string, statement: string, params: Array<string | number | null> = []) => roomCall<unknown[]>(fixture.worker, room, "/sql", { statement, params });

/** Raw SQL expected to fail; returns the SQLite message. */
async function execFailing(room: string, statement: string, params: Array<string | number | null> = []): Promise<string> {
  const response = await fixture.worker.fetch(`/rooms/${encodeURIComponent(room)}/sql`, { method: "POST", body: JSON.stringify({ statement, params }) });
  expect(response.status).toBe(422);
  return ((await response.json()) as { error: string }).error;
}

/** Subscribes and waits for the first (snapshot) poke. */
async function subscribe(socket: RawSocket, id: string, source: Parameters<RawSocket["subscribe"]>[1]): Promise<void> {
  const seen = socket.pokes.length;
  socket.subscribe(id, source);
  await socket.nextPoke(id, seen);
}

async function push(socket: RawSocket, clientId: string, mutations: Mutation[]): Promise<AssembledPoke> {
  const seen = socket.pokes.length;
  socket.send({ type: "push", clientId, mutations });
  return waitFor(() => socket.pokes.slice(seen).find((poke) => poke.mutations?.some((m) => m.clientSeq === mutations[0].clientSeq)), {
    message: "outcomes of the push",
  });
}

/** Every op a subscription ever received for one key. */
const opsFor = (socket: RawSocket, sub: string, key: string) => socket.pokes.flatMap((poke) => poke.ops).filter((op) => op.sub === sub && op.key === key);

describe("values keep their exact form and predicates agree with SQL", () => {
  test("a REAL keeps every digit in live pokes after another column changes, and membership is decided on the exact value", async () => {
    const room = freshRoom();
    await exec(room, `INSERT INTO vals (id, price, name) VALUES ('p', ?, 'a'), ('t', ?, 'b'), ('x', ?, 'c')`, [0.30000000000000004, 1718000000000.123, -3.536552790332434e-287]);
    const socket = await connect(room);
    await subscribe(socket, "all", { list: "vals" });
    await subscribe(socket, "cheap", { shape: "valsWhere", args: { where: { price: { lte: 0.3 } } } });
    expect(socket.rows("all").get("p")!.price).toBe(0.30000000000000004);
    expect(socket.rows("cheap").has("p")).toBe(false); // SQL: 0.30000000000000004 > 0.3
    await exec(room, `UPDATE vals SET name = name || '!'`);
    await waitFor(() => socket.rows("all").get("x")?.name === "c!", { message: "the live update" });
    const rows = socket.rows("all");
    expect(rows.get("p")!.price).toBe(0.30000000000000004);
    expect(rows.get("t")!.price).toBe(1718000000000.123);
    expect(rows.get("x")!.price).toBe(-3.536552790332434e-287);
    // The JS evaluation of the update's image must not let the row in.
    expect(opsFor(socket, "cheap", "p")).toEqual([]);
  });

  test("text compares by code point: an emoji row stays outside { lt: U+FFFF } after an unrelated update", async () => {
    const room = freshRoom();
    await exec(room, `INSERT INTO vals (id, name, price) VALUES ('emoji', '😀', 1), ('plain', 'a', 1)`);
    const socket = await connect(room);
    await subscribe(socket, "below", { shape: "valsWhere", args: { where: { name: { lt: "\uFFFF" } } } });
    expect([...socket.rows("below").keys()]).toEqual(["plain"]);
    await exec(room, `UPDATE vals SET price = 2`);
    await waitFor(() => socket.rows("below").get("plain")?.price === 2, { message: "the live update of the matching row" });
    expect(opsFor(socket, "below", "emoji")).toEqual([]);
  });

  test("a BLOB is { $blob: hex } in snapshots and pokes, never equal to text, and ctx.db writes it back as a BLOB", async () => {
    const room = freshRoom();
    await exec(room, `INSERT INTO vals (id, data, name) VALUES ('b', X'ABCD', 'x'), ('s', NULL, 'ABCD')`);
    const socket = await connect(room);
    await subscribe(socket, "all", { list: "vals" });
    await subscribe(socket, "hexText", { shape: "valsWhere", args: { where: { data: "ABCD" } } });
    await subscribe(socket, "aboveText", { shape: "valsWhere", args: { where: { data: { gt: "zzzz" } } } });
    expect(socket.rows("all").get("b")!.data).toEqual({ $blob: "ABCD" });
    expect(socket.rows("hexText").size).toBe(0);
    expect([...socket.rows("aboveText").keys()]).toEqual(["b"]); // BLOB sorts above every TEXT
    await exec(room, `UPDATE vals SET name = 'y' WHERE id = 'b'`);
    await waitFor(() => socket.rows("all").get("b")?.name === "y", { message: "the live update" });
    expect(socket.rows("all").get("b")!.data).toEqual({ $blob: "ABCD" });
    expect(opsFor(socket, "hexText", "b")).toEqual([]);
    expect(socket.rows("aboveText").get("b")!.name).toBe("y");
    // What the client received can be written back unchanged.
    const outcome = await push(socket, randomUUID(), [{ clientSeq: 1, name: "vals:put", args: { row: { id: "c", data: { $blob: "00FF" } } } }]);
    expect(outcome.mutations![0].status).toBe("applied");
    expect(await exec(room, `SELECT typeof(data) AS t, hex(data) AS h FROM vals WHERE id = 'c'`)).toEqual([{ t: "blob", h: "00FF" }]);
    await waitFor(() => socket.rows("all").get("c"), { message: "the BLOB row" });
    expect(socket.rows("all").get("c")!.data).toEqual({ $blob: "00FF" });
  });

  test("ctx.db stores an unpaired surrogate as U+FFFD, so the row clients get and the bytes SQL compares are one value", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    await subscribe(socket, "exact", { shape: "valsWhere", args: { where: { name: "a\uFFFDb" } } });
    const outcome = await push(socket, randomUUID(), [{ clientSeq: 1, name: "vals:put", args: { row: { id: "u", name: "a\uD800b" } } }]);
    expect(outcome.mutations![0].status).toBe("applied");
    expect(await exec(room, `SELECT hex(name) AS h FROM vals WHERE id = 'u'`)).toEqual([{ h: "61EFBFBD62" }]);
    await waitFor(() => socket.rows("exact").get("u"), { message: "the row under its exact predicate" });
    expect(socket.rows("exact").get("u")!.name).toBe("a\uFFFDb");
  });

  test("an integer beyond 2^53 is refused on write (raw SQL and mutator) instead of reaching clients rounded", async () => {
    const room = freshRoom();
    const message = await execFailing(room, `INSERT INTO vals (id, n) VALUES ('big', 9007199254740993)`);
    expect(message).toContain("LUNORA_VALUE_OUT_OF_RANGE");
    expect(await exec(room, `SELECT id FROM vals`)).toEqual([]);
    const socket = await connect(room);
    await subscribe(socket, "big", { shape: "valsWhere", args: { where: { n: { gt: 9007199254740990 } } } });
    const clientId = randomUUID();
    const outcome = await push(socket, clientId, [
      { clientSeq: 1, name: "vals:put", args: { row: { id: "r", n: 2 ** 60 } } },
      { clientSeq: 2, name: "vals:put", args: { row: { id: "ok", n: 9007199254740991 } } },
    ]);
    expect(outcome.mutations).toMatchObject([
      { clientSeq: 1, status: "rejected", error: { code: "CONSTRAINT_VIOLATION", data: { constraint: "VALUE_RANGE" } } },
      { clientSeq: 2, status: "applied" },
    ]);
    await waitFor(() => socket.rows("big").get("ok"), { message: "the largest safe integer" });
    expect(socket.rows("big").get("ok")!.n).toBe(9007199254740991);
    // Its delete reaches the client (the rounded value used to fail the JS predicate).
    await exec(room, `DELETE FROM vals WHERE id = 'ok'`);
    await waitFor(() => !socket.rows("big").has("ok"), { message: "the delete" });
  });
});

describe("REPLACE is captured whole", () => {
  test("a note moved from alice to bob by INSERT OR REPLACE leaves alice's client and reaches bob's", async () => {
    const room = freshRoom();
    const alice = await connect(room, "user:alice");
    const bob = await connect(room, "user:bob");
    await subscribe(alice, "notes", { list: "notes" });
    await subscribe(bob, "notes", { list: "notes" });
    await roomCall(fixture.worker, room, "/notes/put", { id: "n1", ownerId: "alice", body: "mine" });
    await waitFor(() => alice.rows("notes").has("n1"), { message: "alice's note" });
    await roomCall(fixture.worker, room, "/notes/put", { id: "n1", ownerId: "bob", body: "now bob's" });
    await waitFor(() => bob.rows("notes").get("n1")?.body === "now bob's", { message: "bob receives the note" });
    await waitFor(() => !alice.rows("notes").has("n1"), { message: "alice loses the note" });
  });

  test("a REPLACE that removes another row through a second UNIQUE column deletes it on clients; IGNORE and UPSERT delete nothing", async () => {
    const room = freshRoom();
    const alice = await connect(room, "user:alice");
    const bob = await connect(room, "user:bob");
    await subscribe(alice, "h", { list: "handles" });
    await subscribe(bob, "h", { list: "handles" });
    await exec(room, `INSERT INTO handles (id, ownerId, handle) VALUES ('h1', 'alice', 'x'), ('h2', 'alice', 'y')`);
    await waitFor(() => alice.rows("h").size === 2, { message: "alice's handles" });
    const before = alice.cursor("h")!;
    // h3 takes handle 'x': SQLite deletes h1 without firing delete triggers.
    await exec(room, `INSERT OR REPLACE INTO handles (id, ownerId, handle) VALUES ('h3', 'bob', 'x')`);
    await waitFor(() => bob.rows("h").has("h3"), { message: "bob's new handle" });
    await waitFor(() => !alice.rows("h").has("h1"), { message: "h1 is deleted on alice's client" });
    // UPDATE OR REPLACE displaces h2 the same way.
    await exec(room, `UPDATE OR REPLACE handles SET handle = 'y' WHERE id = 'h3'`);
    await waitFor(() => !alice.rows("h").has("h2"), { message: "h2 is deleted on alice's client" });
    expect(await exec(room, `SELECT id FROM handles ORDER BY id`)).toEqual([{ id: "h3" }]);
    // Statements that displace nothing log no deletes.
    await exec(room, `INSERT OR IGNORE INTO handles (id, ownerId, handle) VALUES ('h4', 'bob', 'y')`);
    await exec(room, `INSERT INTO handles (id, ownerId, handle, body) VALUES ('h3', 'bob', 'y', 'upserted') ON CONFLICT(id) DO UPDATE SET body = excluded.body`);
    await waitFor(() => bob.rows("h").get("h3")?.body === "upserted", { message: "the upsert" });
    // Inserted whole; then each statement changed one column: patches of that column.
    expect(opsFor(bob, "h", "h3").map((op) => [op.op, op.op === "del" ? null : op.row])).toEqual([
      ["put", { id: "h3", ownerId: "bob", handle: "x", body: null }],
      ["patch", { id: "h3", handle: "y" }],
      ["patch", { id: "h3", body: "upserted" }],
    ]);
    expect(bob.rows("h").get("h3")).toEqual({ id: "h3", ownerId: "bob", handle: "y", body: "upserted" });
    expect([...bob.rows("h").keys()]).toEqual(["h3"]);
    // A client resuming from before all of it gets the deletes in its delta.
    const late = await connect(room, "user:alice");
    late.subscribe("h", { list: "handles" }, before);
    const delta = await late.nextPoke("h");
    expect(delta.resets).toEqual([]);
    expect(delta.ops.map((op) => [op.op, op.key]).sort()).toEqual([
      ["del", "h1"],
      ["del", "h2"],
    ]);
  });
});

describe("constraint failures are coded rejections that advance the watermark", () => {
  test("CHECK, NOT NULL, FOREIGN KEY and UNIQUE from ctx.db, patch and raw ctx.sql: each rejected with its code, the writer goes on", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    const outcome = await push(socket, clientId, [
      { clientSeq: 1, name: "checked:insert", args: { id: "a", qty: -1 } },
      { clientSeq: 2, name: "checked:insert", args: { id: "a", qty: null } },
      { clientSeq: 3, name: "checked:insert", args: { id: "a", qty: 1, itemId: "no-such-item" } },
      { clientSeq: 4, name: "checked:insert", args: { id: "a", qty: 1, code: "A" } },
      { clientSeq: 5, name: "checked:insert", args: { id: "b", qty: 1, code: "A" } },
      { clientSeq: 6, name: "checked:insert", args: { id: "b", qty: 1, code: "B" } },
      { clientSeq: 7, name: "checked:patch", args: { id: "b", fields: { code: "A" } } },
      { clientSeq: 8, name: "checked:patch", args: { id: "b", fields: { qty: -5 } } },
      { clientSeq: 9, name: "checked:raw", args: { id: "c", qty: -1 } },
      { clientSeq: 10, name: "checked:raw", args: { id: "c", qty: 3 } },
    ]);
    expect(outcome.mutations!.map((m) => [m.clientSeq, m.status, m.status === "rejected" ? m.error.code : undefined, m.status === "rejected" ? (m.error.data as { constraint: string }).constraint : undefined])).toEqual([
      [1, "rejected", "CONSTRAINT_VIOLATION", "CHECK"],
      [2, "rejected", "CONSTRAINT_VIOLATION", "NOT NULL"],
      [3, "rejected", "CONSTRAINT_VIOLATION", "FOREIGN KEY"],
      [4, "applied", undefined, undefined],
      [5, "rejected", "CONFLICT", "UNIQUE"],
      [6, "applied", undefined, undefined],
      [7, "rejected", "CONFLICT", "UNIQUE"],
      [8, "rejected", "CONSTRAINT_VIOLATION", "CHECK"],
      [9, "rejected", "CONSTRAINT_VIOLATION", "CHECK"],
      [10, "applied", undefined, undefined],
    ]);
    // Recorded: a replay answers from the stored outcome.
    const replay = await push(socket, clientId, [{ clientSeq: 1, name: "checked:insert", args: { id: "a", qty: -1 } }]);
    expect(replay.mutations![0]).toMatchObject({ status: "rejected", error: { code: "CONSTRAINT_VIOLATION" } });
    expect(await exec(room, `SELECT id, qty, code FROM checked ORDER BY id`)).toEqual([
      { id: "a", qty: 1, code: "A" },
      { id: "b", qty: 1, code: "B" },
      { id: "c", qty: 3, code: null },
    ]);
  });
});

describe("a wide table with odd column names", () => {
  test("80 columns named with quotes, spaces, commas and emoji sync through ctx.db and raw SQL writes", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    await subscribe(socket, "wide", { list: "wide" });
    const row: Record<string, unknown> = { id: "w1" };
    WIDE_COLUMNS.forEach((column, index) => {
      row[column] = index % 3 === 0 ? `v"${index}'\n` : index % 3 === 1 ? index + 0.1 : { $blob: index.toString(16).padStart(2, "0").toUpperCase() };
    });
    const outcome = await push(socket, randomUUID(), [{ clientSeq: 1, name: "wide:put", args: { row } }]);
    expect(outcome.mutations![0].status).toBe("applied");
    await waitFor(() => socket.rows("wide").get("w1"), { message: "the wide row" });
    expect(socket.rows("wide").get("w1")).toEqual(row);
    await exec(room, `UPDATE wide SET "q""x" = 'changed', "😀" = 1.5, "late""quote" = 'late change' WHERE id = 'w1'`);
    await waitFor(() => socket.rows("wide").get("w1")?.['q"x'] === "changed", { message: "the raw update" });
    expect(socket.rows("wide").get("w1")).toEqual({ ...row, 'q"x': "changed", "😀": 1.5, 'late"quote': "late change" });
  });
});

describe("writer bookkeeping is bounded per identity", () => {
  test("past 64 clientIds an identity's least recently used one is forgotten; other identities keep theirs", async () => {
    const room = freshRoom();
    const alice = await connect(room, "user:alice");
    const bob = await connect(room, "user:bob");
    const bobsClient = randomUUID();
    await push(bob, bobsClient, [{ clientSeq: 1, name: "items:create", args: { id: randomUUID(), listId: "L", title: "bob" } }]);
    const clients = Array.from({ length: 70 }, () => randomUUID());
    for (const clientId of clients) {
      await push(alice, clientId, [{ clientSeq: 1, name: "items:create", args: { id: randomUUID(), listId: "L", title: "t" } }]);
      // Distinct use times, so "least recently used" is well defined.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const counts = await exec(room, `SELECT identity, count(*) AS n FROM __lunora_clients GROUP BY identity ORDER BY identity`);
    expect(counts).toEqual([
      { identity: "user:alice", n: 64 },
      { identity: "user:bob", n: 1 },
    ]);
    expect(await exec(room, `SELECT count(*) AS n FROM __lunora_outcomes WHERE identity = 'user:alice'`)).toEqual([{ n: 64 }]);
    // The most recent writer is remembered: its write is answered, not re-run.
    const replay = await push(alice, clients[69], [{ clientSeq: 1, name: "items:create", args: { id: randomUUID(), listId: "L", title: "again" } }]);
    expect(replay.mutations![0].status).toBe("applied");
    // The oldest was forgotten: the room expects its clientSeq 1 again.
    const forgotten = await push(alice, clients[0], [{ clientSeq: 2, name: "items:create", args: { id: randomUUID(), listId: "L", title: "late" } }]);
    expect(forgotten.mutations![0]).toMatchObject({ status: "error", error: { code: "OUT_OF_ORDER", data: { expected: 1 } } });
    expect(await exec(room, `SELECT count(*) AS n FROM items WHERE title = 'again'`)).toEqual([{ n: 0 }]);
  });
});
