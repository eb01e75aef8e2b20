/**
 * Real hibernation: Miniflare evicts an idle object after about 10 s while
 * its sockets stay open. Slow by nature (two idle windows).
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { CLOSE_CODES } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { putItems, roomCall, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

const idle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
type Wakes = { constructed: number; lastConstructedAt: number };

test("idle past eviction: sockets stay open, pings are answered without waking, the next write reaches every subscriber", async () => {
  const room = "hibernating";
  const sockets = await Promise.all([0, 1, 2].map(() => RawSocket.connect(worker.host, room)));
  sockets.forEach((socket, i) => socket.subscribe("s", i === 0 ? { list: "items" } : { shape: "itemsByList", args: { listId: "h" } }));
  // Client-chosen ids that are Object.prototype names must survive the attachment round trip too.
  const odd = ["__proto__", "constructor", "toString"];
  for (const id of odd) sockets[2].subscribe(id, { shape: "itemsByList", args: { listId: "h" } });
  await Promise.all(sockets.map((socket) => socket.nextPoke("s")));
  await Promise.all(odd.map((id) => sockets[2].nextPoke(id)));
  const before = await roomCall<Wakes>(worker, room, "/wakes");
  const groupsBefore = sockets.map((socket) => socket.binding("s")!.group);

  await idle(12_000); // past the ~10 s eviction window
  // The runtime answers the keepalive itself.
  for (const socket of sockets) socket.ws.send("ping");
  await waitFor(() => sockets.every((socket) => socket.pongs === 1), { message: "every ping answered" });
  const pingedAt = Date.now();

  const seen = sockets.map((socket) => socket.pokes.length);
  await putItems(worker, room, { id: "woke", listId: "h", title: "after hibernation" });
  const after = await roomCall<Wakes>(worker, room, "/wakes");
  // Evicted and rebuilt: a new construction, and not before the pings were answered.
  expect(after.constructed).toBeGreaterThan(before.constructed);
  expect(after.lastConstructedAt).toBeGreaterThanOrEqual(pingedAt);
  const woke = await Promise.all(sockets.map((socket, i) => socket.nextPoke("s", seen[i])));
  // The woken room names each subscription's group by the same id it bound before the eviction.
  woke.forEach((poke, i) => expect(new Set(poke.blocks.map(([group]) => group))).toEqual(new Set([groupsBefore[i]])));
  for (const socket of sockets) {
    expect(socket.closed).toBeNull();
    expect(socket.rows("s").get("woke")).toMatchObject({ id: "woke", title: "after hibernation" });
  }
  await waitFor(() => odd.every((id) => sockets[2].rows(id).has("woke")), { message: "odd ids after hibernation" });
  expect(sockets[2].errors).toEqual([]);
  await Promise.all(sockets.map((socket) => socket.close()));
}, 60_000);

test("a snapshot left half-read past eviction: the socket is closed with 4010 on wake and a new socket gets the whole snapshot", async () => {
  const room = "hibernating-snapshot";
  const rows = Array.from({ length: 30_000 }, (_, i) => ({ id: `s-${String(i).padStart(6, "0")}`, listId: "big", title: `row ${i} `.padEnd(60, ".") }));
  for (let i = 0; i < rows.length; i += 10_000) await putItems(worker, room, rows.slice(i, i + 10_000));
  const reader = await RawSocket.connect(worker.host, room);
  reader.acknowledge = false;
  reader.subscribe("s", { shape: "itemsByList", args: { listId: "big" } });
  await waitFor(() => reader.frames.some((frame) => frame.type === "pokePart"), { message: "the first part" });
  const before = await roomCall<Wakes>(worker, room, "/wakes");

  await idle(12_000); // past the eviction window, the poke still open
  await putItems(worker, room, { id: "s-late", listId: "big", title: "after the eviction" });
  const after = await roomCall<Wakes>(worker, room, "/wakes");
  expect(after.constructed).toBeGreaterThan(before.constructed);
  await waitFor(() => reader.closed, { message: "the interrupted socket closed" });
  expect(reader.closed!.code).toBe(CLOSE_CODES.INTERRUPTED);
  expect(reader.pokes.filter((poke) => poke.subs.includes("s"))).toEqual([]);

  const again = await RawSocket.connect(worker.host, room);
  again.subscribe("s", { shape: "itemsByList", args: { listId: "big" } });
  const poke = await again.nextPoke("s");
  expect(poke.ops.length).toBe(30_001);
  await again.close();
}, 90_000);

test("a column added while the room hibernates: a subscription projecting every column still receives the next write (never ops under a group the client was not bound to)", async () => {
  const room = "hibernating-migration";
  const socket = await RawSocket.connect(worker.host, room);
  socket.subscribe("all", { shape: "commasAll", args: {} });
  await socket.nextPoke("all");
  expect(socket.binding("all")!.columns).not.toContain("d");
  // The room's own code migrates the table; the woken room reads its new columns.
  await roomCall(worker, room, "/sql", { statement: `ALTER TABLE commas ADD COLUMN d TEXT` });

  await idle(12_000); // past the ~10 s eviction window
  const seen = socket.pokes.length;
  await roomCall(worker, room, "/commas/put", { id: "after", ab: "x", c: "y", a: "z", bc: "w" });
  await waitFor(() => socket.rows("all").has("after"), { message: "the write after the migration and the wake reaches the subscription" });
  expect(socket.rows("all").get("after")).toMatchObject({ id: "after", a: "z", c: "y", d: null });
  // Rebound to what it reads now, the new column included.
  expect(socket.binding("all")!.columns).toContain("d");
  expect(socket.pokes.length).toBeGreaterThan(seen);
  expect(socket.errors).toEqual([]);
  expect(socket.closed).toBeNull();
  await socket.close();
}, 60_000);

test("a resume from a cursor older than a column added to its projection is a reset: rows the log never touched get the new column too", async () => {
  const room = "migration-resume";
  await roomCall(worker, room, "/commas/put", { id: "old", ab: "x", c: "y", a: "z", bc: "w" });
  const first = await RawSocket.connect(worker.host, room);
  first.subscribe("all", { shape: "commasAll", args: {} });
  await first.nextPoke("all");
  const cursor = first.cursor("all")!;
  const held = first.rows("all");
  await first.close();
  // The room's own code migrates the table; the woken room reads its new columns.
  await roomCall(worker, room, "/sql", { statement: `ALTER TABLE commas ADD COLUMN d TEXT NOT NULL DEFAULT 'dflt'` });
  await idle(12_000); // past the ~10 s eviction window

  const second = await RawSocket.connect(worker.host, room);
  second.subscribe("all", { shape: "commasAll", args: {} }, cursor, held);
  await second.nextPoke("all");
  expect(second.binding("all")!.columns).toContain("d");
  expect(second.rows("all").get("old")).toMatchObject({ id: "old", a: "z", d: "dflt" });
  expect(second.errors).toEqual([]);
  await second.close();
}, 60_000);

test("refreshSchema() after a migration rebinds live subscriptions that project every column, with a reset; a later resume brings every column", async () => {
  const room = "migration-live";
  await roomCall(worker, room, "/commas/put", { id: "old", ab: "x", c: "y", a: "z", bc: "w" });
  const socket = await RawSocket.connect(worker.host, room);
  socket.subscribe("all", { shape: "commasAll", args: {} });
  await socket.nextPoke("all");
  const seen = socket.pokes.length;
  await roomCall(worker, room, "/lunora/migrate", { statement: `ALTER TABLE commas ADD COLUMN d TEXT NOT NULL DEFAULT 'dflt'` });
  await roomCall(worker, room, "/commas/put", { id: "new", ab: "x", c: "y", a: "z", bc: "w" });
  await waitFor(() => socket.rows("all").has("new"), { message: "the write after the migration" });
  expect(socket.pokes.length).toBeGreaterThan(seen);
  expect(socket.binding("all")!.columns).toContain("d");
  expect(socket.rows("all").get("old")).toMatchObject({ id: "old", d: "dflt" });
  expect(socket.rows("all").get("new")).toMatchObject({ id: "new", d: "dflt" });
  const cursor = socket.cursor("all")!;
  const held = socket.rows("all");
  await socket.close();

  const again = await RawSocket.connect(worker.host, room);
  again.subscribe("all", { shape: "commasAll", args: {} }, cursor, held);
  await again.nextPoke("all");
  expect(again.rows("all").get("old")).toMatchObject({ id: "old", d: "dflt" });
  expect(again.errors).toEqual([]);
  await again.close();
});
