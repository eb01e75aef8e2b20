/**
 * Protocol 4 at the room (issue 13): column patches, frames built once per
 * set of changed groups and shared by every socket reading it, groups that
 * never carry another identity's rows, bind/flush ordering, group-id
 * collisions. Raw sockets against the fixture room in real workerd.
 */
import { describe, expect, test } from "vitest";
import { MAX_FRAME_BYTES, type OpBlock } from "../../src/protocol/index.js";
import { putItems, roomCall, updateItem } from "../helpers/fixture-room.js";
import type { RawSocket } from "../helpers/raw-socket.js";
import { useRawFixtureRoom } from "../helpers/raw-fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

const fixture = useRawFixtureRoom("fanout");
const { freshRoom, connect } = fixture;

type Cols10 = Record<"id" | "grp" | "a" | "b" | "c" | "d" | "e" | "f" | "g" | "h", string | null>;
const row10 = (id: string, grp = "g"): Cols10 => ({ id, grp, a: `${id}a`, b: `${id}b`, c: `${id}c`, d: `${id}d`, e: `${id}e`, f: `${id}f`, g: `${id}g`, h: `${id}h` });
const put10 = (room: string, rows: Cols10[]) => roomCall(fixture.worker, room, "/cols10/put", rows);
/** Updates in order, one UPDATE statement each, in one transaction (so one flush). */
const set10 = (room: string, updates: Array<{ id: string; column: string; value: string | null }>) => roomCall(fixture.worker, room, "/cols10/set", updates);
type Stats = { flushes: number; pokeFramesBuilt: number; pokeFramesSent: number };
const stats = (room: string) => roomCall<Stats>(fixture.worker, room, "/lunora/stats");

/** Subscribes and waits for the poke that answers it. */
async function subscribe(socket: RawSocket, id: string, source: Parameters<RawSocket["subscribe"]>[1]): Promise<void> {
  const seen = socket.pokes.length;
  socket.subscribe(id, source);
  await socket.nextPoke(id, seen);
}

describe("column patches", () => {
  test("a one-column update of a 10-column row sends a `u` patch of the key and that column only", async () => {
    const room = freshRoom();
    await put10(room, [row10("r1"), row10("r2")]);
    const socket = await connect(room);
    await subscribe(socket, "s", { list: "cols10" });
    const group = socket.binding("s")!.group;
    const seen = socket.pokes.length;
    await set10(room, [{ id: "r1", column: "c", value: "new c" }]);
    const poke = await socket.nextPoke("s", seen);
    expect(poke.blocks).toEqual([[group, "u", { id: "r1", c: "new c" }]]);
    expect(socket.raw.at(-1)).toContain(`[${JSON.stringify(group)},"u",{"id":"r1","c":"new c"}]`);
    expect(socket.rows("s").get("r1")).toEqual({ ...row10("r1"), c: "new c" });
  });

  test("several updates of a key in one flush send the union of the columns they changed, a column changed back included", async () => {
    const room = freshRoom();
    await put10(room, [row10("r1")]);
    const socket = await connect(room);
    await subscribe(socket, "s", { list: "cols10" });
    const group = socket.binding("s")!.group;
    const seen = socket.pokes.length;
    await set10(room, [
      { id: "r1", column: "a", value: "changed" },
      { id: "r1", column: "b", value: "b2" },
      { id: "r1", column: "a", value: "r1a" }, // back to what it was
      { id: "r1", column: "d", value: "r1d" }, // "changed" to the same value: not a change
    ]);
    const poke = await socket.nextPoke("s", seen);
    expect(poke.blocks).toEqual([[group, "u", { id: "r1", a: "r1a", b: "b2" }]]);
    expect(socket.rows("s").get("r1")).toEqual({ ...row10("r1"), b: "b2" });
  });

  test("a resume over several updates of a key sends the union of changed columns with final values, to a client at any point of the stretch", async () => {
    const room = freshRoom();
    await put10(room, [row10("r1"), row10("r2")]);
    const first = await connect(room);
    await subscribe(first, "s", { list: "cols10" });
    const cursor = first.cursor("s")!;
    const atCursor = first.rows("s");
    // Separate flushes: the first socket follows the stretch step by step.
    await set10(room, [{ id: "r1", column: "a", value: "a1" }]);
    await waitFor(() => first.rows("s").get("r1")?.a === "a1", { message: "first step" });
    const midway = first.rows("s");
    await set10(room, [{ id: "r1", column: "e", value: "e1" }]);
    await set10(room, [{ id: "r1", column: "a", value: "r1a" }]);
    await waitFor(() => first.rows("s").get("r1")?.a === "r1a", { message: "last step" });

    for (const holding of [atCursor, midway]) {
      const again = await connect(room);
      again.subscribe("s", { list: "cols10" }, cursor, holding);
      const poke = await again.nextPoke("s");
      expect(poke.resets).toEqual([]);
      expect(poke.blocks).toEqual([[poke.bind[0].group, "u", { id: "r1", a: "r1a", e: "e1" }]]);
      expect(again.rows("s")).toEqual(first.rows("s"));
      await again.close();
    }
  });

  test("an update that moves a row into a shape is a whole-row put, out of it a delete; one that changes every projected column is a put", async () => {
    const room = freshRoom();
    await put10(room, [row10("in", "other"), row10("out", "g"), row10("all", "g")]);
    const socket = await connect(room);
    await subscribe(socket, "s", { shape: "cols10ByGroup", args: { grp: "g" } });
    await subscribe(socket, "list", { list: "cols10" });
    const shape = socket.binding("s")!.group;
    const list = socket.binding("list")!.group;
    const seen = socket.pokes.length;
    await set10(room, [
      { id: "in", column: "grp", value: "g" },
      { id: "out", column: "grp", value: "other" },
      ...["grp", "a", "b", "c", "d", "e", "f", "g", "h"].map((column) => ({ id: "all", column, value: `${column}!` })),
    ]);
    const poke = await socket.nextPoke("s", seen);
    const blocks = poke.blocks as OpBlock[];
    const all = { id: "all", grp: "grp!", a: "a!", b: "b!", c: "c!", d: "d!", e: "e!", f: "f!", g: "g!", h: "h!" };
    expect(blocks.filter(([group]) => group === shape)).toEqual([
      [shape, "p", { ...row10("in"), grp: "g" }],
      [shape, "d", "out", "all"],
    ]);
    expect(blocks.filter(([group]) => group === list)).toEqual([
      [list, "p", all],
      [list, "u", { id: "in", grp: "g" }, { id: "out", grp: "other" }],
    ]);
    expect([...socket.rows("s").keys()]).toEqual(["in"]);
    expect(socket.rows("list").get("all")).toEqual(all);
  });
});

describe("shared frames", () => {
  test("50 sockets on one shape get byte-identical live frames, built once per flush; a writer's frame differs only by its outcomes", async () => {
    const room = freshRoom();
    const readers = await Promise.all(Array.from({ length: 50 }, () => connect(room)));
    for (const socket of readers) await subscribe(socket, "s", { shape: "itemsByList", args: { listId: "L" } });
    const groups = new Set(readers.map((socket) => socket.binding("s")!.group));
    expect(groups.size).toBe(1);

    const before = await stats(room);
    const seen = readers.map((socket) => socket.raw.length);
    await putItems(fixture.worker, room, { id: "i1", listId: "L", title: "hello" });
    await waitFor(() => readers.every((socket) => socket.rows("s").has("i1")), { message: "every reader has i1" });
    const after = await stats(room);
    expect(after.flushes - before.flushes).toBe(1);
    expect(after.pokeFramesBuilt - before.pokeFramesBuilt).toBe(1);
    expect(after.pokeFramesSent - before.pokeFramesSent).toBe(50);
    const frames = readers.map((socket, i) => socket.raw.slice(seen[i]));
    for (const received of frames) expect(received).toEqual(frames[0]);
    expect(frames[0]).toHaveLength(1);

    // A push from one of them: the same frame, with its outcome spliced into it.
    const writer = readers[0];
    const seenAgain = readers.map((socket) => socket.raw.length);
    const beforePush = await stats(room);
    writer.send({ type: "push", clientId: "writer-1", mutations: [{ clientSeq: 1, name: "items:rename", args: { id: "i1", title: "renamed" } }] });
    await waitFor(() => readers.every((socket) => socket.rows("s").get("i1")?.title === "renamed"), { message: "every reader has the rename" });
    await waitFor(() => writer.pokes.at(-1)?.mutations !== undefined, { message: "the writer's outcome" });
    const afterPush = await stats(room);
    expect(afterPush.pokeFramesBuilt - beforePush.pokeFramesBuilt).toBe(1);
    const live = readers.map((socket, i) => socket.raw.slice(seenAgain[i]));
    for (const received of live.slice(1)) expect(received).toEqual(live[1]);
    expect(live[0]).toHaveLength(1);
    const shared = JSON.parse(live[1][0]);
    const own = JSON.parse(live[0][0]);
    expect(own.mutations).toEqual([{ clientSeq: 1, status: "applied" }]);
    delete own.mutations;
    expect(own).toEqual(shared);
  }, 120_000);

  test("a writer whose outcomes would push the shared frame past the bound gets its own frames, split; the others keep the shared one", async () => {
    const room = freshRoom();
    await putItems(fixture.worker, room, { id: "big", listId: "BIG", title: "short" });
    const writer = await connect(room);
    const reader = await connect(room);
    for (const socket of [writer, reader]) await subscribe(socket, "s", { shape: "itemsByList", args: { listId: "BIG" } });
    let clientSeq = 0;
    const rename = async (title: string) => {
      const seen = [writer.raw.length, reader.raw.length];
      writer.send({ type: "push", clientId: "big-writer", mutations: [{ clientSeq: ++clientSeq, name: "items:rename", args: { id: "big", title } }] });
      await waitFor(() => reader.rows("s").get("big")?.title === title && writer.pokes.at(-1)?.mutations?.[0]?.clientSeq === clientSeq, { message: "the rename" });
      return { writer: writer.raw.slice(seen[0]), reader: reader.raw.slice(seen[1]) };
    };
    // Calibrate: the shared frame's size without the title.
    const probe = await rename("x".repeat(1_000));
    const base = Buffer.byteLength(probe.reader[0]) - 1_000;
    // A title that leaves the shared frame 20 bytes under the bound: its outcome does not fit in it.
    const before = await stats(room);
    const { writer: own, reader: shared } = await rename("y".repeat(MAX_FRAME_BYTES - 20 - base));
    const after = await stats(room);
    expect(shared).toHaveLength(1);
    expect(Buffer.byteLength(shared[0])).toBeGreaterThan(MAX_FRAME_BYTES - 40);
    expect(Buffer.byteLength(shared[0])).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(own.map((frame) => JSON.parse(frame).type)).toEqual(["pokeStart", "pokePart", "pokeEnd"]);
    for (const frame of own) expect(Buffer.byteLength(frame)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(JSON.parse(own[2]).mutations).toEqual([{ clientSeq: 2, status: "applied" }]);
    // One shared build and the writer's own three frames.
    expect(after.pokeFramesBuilt - before.pokeFramesBuilt).toBe(4);
    expect(writer.rows("s")).toEqual(reader.rows("s"));
  });

  test("identities whose read rules differ never share a frame: nothing of one reaches the other, by group or by row", async () => {
    const room = freshRoom();
    const admin = await connect(room, "user:root:admin");
    const bob = await connect(room, "user:bob");
    const carol = await connect(room, "user:carol");
    for (const socket of [admin, bob]) await subscribe(socket, "items", { shape: "itemsByList", args: { listId: "L" } });
    for (const socket of [bob, carol]) await subscribe(socket, "notes", { list: "notes" });
    // Same shape and args, different read rules: different groups.
    expect(admin.binding("items")!.group).not.toBe(bob.binding("items")!.group);
    expect(bob.binding("notes")!.group).not.toBe(carol.binding("notes")!.group);

    const seen = [admin, bob, carol].map((socket) => socket.raw.length);
    // Rows for every group: each reader must get only its own.
    await roomCall(fixture.worker, room, "/sql", {
      statement: `INSERT INTO items (id, listId, title, secret) VALUES ('open-1', 'L', 'open', 0), ('secret-1', 'L', 'classified', 1)`,
    });
    await roomCall(fixture.worker, room, "/notes/put", { id: "note-of-carol", ownerId: "carol", body: "carol only" });
    await roomCall(fixture.worker, room, "/notes/put", { id: "note-of-bob", ownerId: "bob", body: "bob only" });
    await waitFor(() => admin.rows("items").has("secret-1") && bob.rows("items").has("open-1") && carol.rows("notes").has("note-of-carol") && bob.rows("notes").has("note-of-bob"), {
      message: "every reader has its rows",
    });
    const text = (socket: RawSocket, i: number) => socket.raw.slice(seen[i]).join("\n");
    expect(text(bob, 1)).not.toMatch(/secret-1|classified|note-of-carol|carol only/);
    expect(text(bob, 1)).not.toContain(admin.binding("items")!.group);
    expect(text(bob, 1)).not.toContain(carol.binding("notes")!.group);
    expect(text(carol, 2)).not.toMatch(/note-of-bob|bob only|secret-1/);
    expect(text(carol, 2)).not.toContain(bob.binding("notes")!.group);
    expect([...bob.rows("items").keys()]).toEqual(["open-1"]);
    expect([...carol.rows("notes").keys()]).toEqual(["note-of-carol"]);
  });
});

describe("bindings and cursors", () => {
  test("a write the room has not flushed yet reaches the socket's other subscriptions no later than the poke that answers a subscribe", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    await subscribe(socket, "a", { list: "items" });
    // Written by an RPC method with plain SQL: in the log, not flushed.
    const response = await fixture.worker.fetch(`/rpc/${room}/put-item-unflushed`, { method: "POST", body: JSON.stringify({ id: "pending", listId: "L", title: "unflushed" }) });
    const { seq } = (await response.json()) as { seq: number };
    expect(socket.rows("a").has("pending")).toBe(false);
    const seen = socket.pokes.length;
    socket.subscribe("b", { shape: "itemsByList", args: { listId: "M" } });
    const answer = await socket.nextPoke("b", seen);
    // Every bound subscription is at the answer's cursor: "a" has the row by then.
    expect(answer.cursor.seq).toBeGreaterThanOrEqual(seq);
    const upToAnswer = socket.pokes.slice(seen, socket.pokes.indexOf(answer) + 1);
    expect(upToAnswer.flatMap((poke) => poke.ops).filter((op) => op.sub === "a").map((op) => op.key)).toEqual(["pending"]);
  });

  test("a group id taken by another definition (a hash collision) ends the new subscription with INTERNAL; the first keeps its frames", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    await roomCall(fixture.worker, room, "/lunora/collide-groups");
    await subscribe(socket, "first", { shape: "itemsByList", args: { listId: "A" } });
    expect(socket.binding("first")!.group).toBe("collision");
    const errors = socket.errors.length;
    socket.subscribe("second", { shape: "itemsByList", args: { listId: "B" } });
    const error = await socket.nextError(errors);
    expect(error).toMatchObject({ sub: "second", error: { code: "INTERNAL" } });
    // Same definition again: the same group, no collision.
    await subscribe(socket, "again", { shape: "itemsByList", args: { listId: "A" } });
    const seen = socket.pokes.length;
    await putItems(fixture.worker, room, [{ id: "b1", listId: "B", title: "b" }, { id: "a1", listId: "A", title: "a" }]);
    const poke = await socket.nextPoke("first", seen);
    expect(poke.ops.map((op) => [op.sub, op.key]).sort()).toEqual([
      ["again", "a1"],
      ["first", "a1"],
    ]);
    expect(socket.raw.join("\n")).not.toContain('"b1"');
  });
});
