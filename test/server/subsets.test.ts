/**
 * On-demand subsets (server-kit/subsets.ts) over real sockets against the
 * fixture room in real workerd: a subset delivers exactly the shape's rows
 * that match it and the read rule, a limit resolves to "up to the count-th
 * row, ties included" in every order, the subset stays live and resumes from
 * its cursor with the resolved predicate (after a drop, a restart, a wake),
 * and hostile subsets get coded errors on their own subscription.
 *
 * Oracles are independent of the room's predicate engines: hand-written SQL
 * through the room's `/sql` route, and a JavaScript sort for the limits.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MAX_SUBSET_CHARS, type ClientFrame, type Cursor } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket, type AssembledPoke } from "../helpers/raw-socket.js";
import { putProps as putRows, roomCall, startFixtureRoom, type PropInput } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
const sockets: RawSocket[] = [];
let roomCounter = 0;
const freshRoom = () => `subsets-${Date.now().toString(36)}-${roomCounter++}`;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(async () => {
  await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
  await worker?.stop();
});

type Value = string | number | null;
type Prop = Required<PropInput>;

/** Rows of group g1 with ties, NULLs, negatives, reals and texts; some hidden by the read rule; and another group. */
function dataset(): Prop[] {
  const a = [3, null, 1, 2, 2, 2, 5, null, 7, 7, 9, 0, -4, 12, 12, 12, 15, 20, null, 4, 6, 8, 10, 11];
  const b = [0.5, -1.25, null, 2.5, 2.5, 1e-3, 3.75, null, -0, 100.125, 7.5, 7.5, null, 0.1, 0.2, 0.30000000000000004, 42, -3.5, 9, 9, 1.5, 1.5, 2, null];
  const c = ["b", "a", null, "B", "ba", "b", "zz", "a", "é", "z", null, "aa", "m", "m", "m", "n", "0", "10", "9", null, "k", "l", "é", "ab"];
  const rows: Prop[] = a.map((value, i) => ({
    id: `p${String(i).padStart(2, "0")}`,
    grp: "g1",
    a: value,
    b: b[i],
    c: c[i],
    hidden: i % 5 === 0 ? "secret" : i % 3 === 0 ? null : "visible",
  }));
  for (let i = 0; i < 6; i++) rows.push({ id: `q${i}`, grp: "g2", a: i, b: i / 2, c: `q${i}`, hidden: null });
  return rows;
}

async function putProps(room: string, put: Prop[] = [], del: string[] = []): Promise<void> {
  await putRows(worker, room, put, del);
}

/** Ids the room's own SQL selects (the oracle for predicates: not the room's compiler). */
async function sqlIds(room: string, condition: string, params: Value[] = []): Promise<string[]> {
  const rows = await roomCall<Array<{ id: string }>>(worker, room, "/sql", {
    statement: `SELECT id FROM props WHERE grp = 'g1' AND hidden IS NOT 'secret' AND (${condition}) ORDER BY id`,
    params,
  });
  return rows.map((row) => row.id);
}

async function connect(room: string): Promise<RawSocket> {
  const socket = await RawSocket.connect(worker.host, room);
  sockets.push(socket);
  await waitFor(() => socket.frames.some((frame) => frame.type === "hello"), { message: "hello" });
  return socket;
}

const source = (grp = "g1") => ({ shape: "propsByGroup", args: { grp } });

function subscribe(socket: RawSocket, id: string, subset: unknown, { grp = "g1", cursor }: { grp?: string; cursor?: Cursor } = {}): void {
  const frame = { type: "subscribe", id, source: source(grp), subset, ...(cursor ? { cursor } : {}) } as ClientFrame;
  socket.send(frame);
}

const keysOf = (socket: RawSocket, sub: string) => [...socket.rows(sub).keys()].map(String).sort();

/** TanStack DB's default order: ascending, NULLs first; numbers by value, text by code unit (ASCII and é here). */
function compare(x: Value, y: Value, desc: boolean, nullsLast: boolean): number {
  if (x === null || y === null) {
    if (x === y) return 0;
    return (x === null) === nullsLast ? 1 : -1;
  }
  const order = typeof x === "number" && typeof y === "number" ? x - y : typeof x === "number" ? -1 : typeof y === "number" ? 1 : x < y ? -1 : x > y ? 1 : 0;
  return desc ? -order : order;
}

/** The first `count` rows in the order, plus every row tied with the count-th; all rows if fewer. */
function firstWithTies(rows: Prop[], column: "a" | "b" | "c", count: number, desc: boolean, nullsLast: boolean): string[] {
  const sorted = [...rows].sort((x, y) => compare(x[column], y[column], desc, nullsLast));
  if (sorted.length <= count) return sorted.map((row) => row.id).sort();
  const boundary = sorted[count - 1][column];
  return sorted.filter((row) => compare(row[column], boundary, desc, nullsLast) <= 0).map((row) => row.id).sort();
}

const visible = (rows: Prop[]) => rows.filter((row) => row.grp === "g1" && row.hidden !== "secret");

describe("a subset delivers exactly shape ∧ read ∧ where", () => {
  const cases: Array<{ where: unknown; sql: string; params?: Value[] }> = [
    { where: { a: { gte: 3 } }, sql: "a >= 3" },
    { where: { $or: [{ c: "m" }, { b: { lt: 0 } }] }, sql: "c = 'm' OR b < 0" },
    { where: { a: null }, sql: "a IS NULL" },
    { where: { $not: { a: { in: [1, 2, 12] } } }, sql: "NOT (a IN (1, 2, 12))" },
    { where: { c: { ne: "m" }, b: { gt: 0.2 } }, sql: "c IS NOT 'm' AND b > 0.2" },
    { where: { $and: [{ c: { gte: "a" } }, { c: { lt: "b" } }] }, sql: "c >= 'a' AND c < 'b'" },
    { where: true, sql: "1" },
    { where: false, sql: "0" },
  ];

  test("for predicates of every operator, never a hidden row, never another group's row", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    for (const [i, testCase] of cases.entries()) subscribe(socket, `w${i}`, { where: testCase.where });
    for (const [i, testCase] of cases.entries()) {
      const poke = await socket.nextPoke(`w${i}`);
      expect(poke.resets).toContain(`w${i}`);
      // No limit: nothing to report.
      expect(poke.subsets).toBeUndefined();
      expect({ where: testCase.where, keys: keysOf(socket, `w${i}`) }).toEqual({ where: testCase.where, keys: await sqlIds(room, testCase.sql, testCase.params) });
    }
    expect(socket.errors).toEqual([]);
    const text = socket.raw.join("\n");
    for (const row of dataset().filter((row) => row.hidden === "secret" || row.grp !== "g1")) expect(text).not.toContain(`"${row.id}"`);
    expect(text).not.toContain("secret");
  });

  test("two identical subsets on two sockets and a different one get their own rows from one flush", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const [x, y] = [await connect(room), await connect(room)];
    subscribe(x, "s", { where: { a: { gte: 10 } } });
    subscribe(y, "s", { where: { a: { gte: 10 } } });
    subscribe(y, "t", { where: { a: { lt: 10 } } });
    await Promise.all([x.nextPoke("s"), y.nextPoke("s"), y.nextPoke("t")]);
    const seen = [x.pokes.length, y.pokes.length];
    await putProps(room, [{ id: "n1", grp: "g1", a: 11, b: null, c: null, hidden: null }, { id: "n2", grp: "g1", a: 1, b: null, c: null, hidden: null }]);
    const [px, py] = [await x.nextPoke("s", seen[0]), await y.nextPoke("s", seen[1])];
    expect(px.ops.map((op) => [op.sub, op.key])).toEqual([["s", "n1"]]);
    expect(py.ops.map((op) => [op.sub, op.key]).sort()).toEqual([
      ["s", "n1"],
      ["t", "n2"],
    ]);
  });
});

describe("limit: the first count rows, ties included", () => {
  test("asc/desc × NULLs first/last on integers, reals and lexical text; NULL boundaries; fewer rows than count", async () => {
    const room = freshRoom();
    const rows = dataset();
    await putProps(room, rows);
    const socket = await connect(room);
    const where = { a: { ne: 9 } };
    const candidates = visible(rows).filter((row) => row.a !== 9); // `ne` is null-safe: NULL rows stay
    const plans: Array<{ column: "a" | "b" | "c"; count: number; desc: boolean; nullsLast: boolean }> = [];
    for (const column of ["a", "b", "c"] as const) {
      for (const desc of [false, true]) {
        for (const nullsLast of [false, true]) {
          for (const count of [1, 3, 6, 14, 100]) plans.push({ column, count, desc, nullsLast });
        }
      }
    }
    for (const [i, plan] of plans.entries()) {
      subscribe(socket, `l${i}`, { where, limit: { count: plan.count, column: plan.column, desc: plan.desc, nullsLast: plan.nullsLast, lexical: true } });
    }
    let cuts = 0;
    for (const [i, plan] of plans.entries()) {
      const poke = await socket.nextPoke(`l${i}`);
      expect(poke.resets).toContain(`l${i}`);
      const report = poke.subsets?.find((subset) => subset.sub === `l${i}`);
      expect(report).toBeDefined();
      const expected = firstWithTies(candidates, plan.column, plan.count, plan.desc, plan.nullsLast);
      expect({ plan, keys: keysOf(socket, `l${i}`) }).toEqual({ plan, keys: expected });
      if (expected.length < candidates.length) cuts++;
      // The report is the cut itself: fewer rows than count means no cut.
      if (plan.count >= candidates.length) expect(report!.where).toEqual(where);
    }
    // The plans reach real cuts, NULL boundaries included.
    expect(cuts).toBeGreaterThan(plans.length / 2);
    expect(socket.errors).toEqual([]);
  });

  test("a NULL boundary: NULLs first → only the NULL rows; NULLs last → no cut", async () => {
    const room = freshRoom();
    const rows = dataset();
    await putProps(room, rows);
    const socket = await connect(room);
    subscribe(socket, "first", { limit: { count: 2, column: "a" } });
    subscribe(socket, "last", { limit: { count: 18, column: "a", nullsLast: true } });
    const first = await socket.nextPoke("first");
    expect(first.subsets).toEqual([{ sub: "first", where: { a: null } }]);
    expect(keysOf(socket, "first")).toEqual(visible(rows).filter((row) => row.a === null).map((row) => row.id).sort());
    const last = await socket.nextPoke("last");
    // The 18th row in this order is a NULL one: the cut would be every row.
    expect(firstWithTies(visible(rows), "a", 18, false, true)).toEqual(visible(rows).map((row) => row.id).sort());
    expect(last.subsets).toEqual([{ sub: "last", where: true }]);
    expect(keysOf(socket, "last")).toEqual(visible(rows).map((row) => row.id).sort());
  });

  test("a text boundary cuts only under lexical order; without `lexical` the subset is its where alone", async () => {
    const room = freshRoom();
    const rows = dataset();
    await putProps(room, rows);
    const socket = await connect(room);
    subscribe(socket, "lexical", { where: { b: { ne: null } }, limit: { count: 3, column: "c", lexical: true, nullsLast: true } });
    subscribe(socket, "locale", { where: { b: { ne: null } }, limit: { count: 3, column: "c", nullsLast: true } });
    const lexical = await socket.nextPoke("lexical");
    const withB = visible(rows).filter((row) => row.b !== null);
    expect(keysOf(socket, "lexical")).toEqual(firstWithTies(withB, "c", 3, false, true));
    expect(lexical.subsets![0].where).toEqual({ $and: [{ b: { ne: null } }, { c: { lte: "9" } }] });
    const locale = await socket.nextPoke("locale");
    expect(locale.subsets).toEqual([{ sub: "locale", where: { b: { ne: null } } }]);
    expect(keysOf(socket, "locale")).toEqual(withB.map((row) => row.id).sort());
  });

  test("`after` counts the boundary past a cursor, so a load-more moves past the ties", async () => {
    const room = freshRoom();
    const rows = dataset();
    await putProps(room, rows);
    const socket = await connect(room);
    // First page: count 4 by a ascending → the 4th row is a 2, with its ties.
    subscribe(socket, "page1", { where: { a: { ne: null } }, limit: { count: 4, column: "a" } });
    await socket.nextPoke("page1");
    const nonNull = visible(rows).filter((row) => row.a !== null);
    expect(keysOf(socket, "page1")).toEqual(firstWithTies(nonNull, "a", 4, false, false));
    const page1Max = Math.max(...keysOf(socket, "page1").map((id) => rows.find((row) => row.id === id)!.a!));
    // Load more: 3 more rows after the last value seen. Without `after` the
    // boundary would be the same row again (the client already has the ties).
    subscribe(socket, "page2", { where: { a: { ne: null } }, limit: { count: 3, column: "a", after: { a: { gt: page1Max } } } });
    const page2 = await socket.nextPoke("page2");
    const past = nonNull.filter((row) => row.a! > page1Max);
    const third = [...past].sort((x, y) => x.a! - y.a!)[2].a!;
    expect(page2.subsets).toEqual([{ sub: "page2", where: { $and: [{ a: { ne: null } }, { $or: [{ a: null }, { a: { lte: third } }] }] } }]);
    expect(keysOf(socket, "page2")).toEqual(nonNull.filter((row) => row.a! <= third).map((row) => row.id).sort());
    expect(keysOf(socket, "page2").filter((id) => rows.find((row) => row.id === id)!.a! > page1Max).length).toBeGreaterThanOrEqual(3);
  });

  test("the report rides in pokeStart when the reset is split into parts", async () => {
    const room = freshRoom();
    const wide = Array.from({ length: 6_000 }, (_, i): Prop => ({ id: `w${String(i).padStart(4, "0")}`, grp: "g3", a: i, b: null, c: "x".repeat(200), hidden: null }));
    await putProps(room, wide);
    const socket = await connect(room);
    subscribe(socket, "wide", { limit: { count: 5_000, column: "a", desc: true } }, { grp: "g3" });
    const poke = await socket.nextPoke("wide");
    expect(poke.parts).toBeGreaterThan(1);
    expect(socket.frames.find((frame) => frame.type === "pokeStart")).toMatchObject({ subsets: [{ sub: "wide", where: { $or: [{ a: null }, { a: { gte: 1_000 } }] } }] });
    expect(poke.subsets).toEqual([{ sub: "wide", where: { $or: [{ a: null }, { a: { gte: 1_000 } }] } }]);
    expect(socket.rows("wide").size).toBe(5_000);
  });

  test("a limit always starts with a reset, even with a cursor", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    subscribe(socket, "s", { where: { a: { gte: 10 } } });
    await socket.nextPoke("s");
    const cursor = socket.cursor("s")!;
    const seen = socket.pokes.length;
    subscribe(socket, "s", { where: { a: { gte: 10 } }, limit: { count: 2, column: "a" } }, { cursor });
    const poke = await socket.nextPoke("s", seen);
    expect(poke.resets).toEqual(["s"]);
    expect(poke.subsets).toEqual([{ sub: "s", where: { $and: [{ a: { gte: 10 } }, { $or: [{ a: null }, { a: { lte: 11 } }] }] } }]);
    expect(keysOf(socket, "s")).toEqual(["p22", "p23"]);
  });
});

describe("live subsets", () => {
  test("a row entering or leaving the subset arrives as put/del; a change of a row outside it sends nothing", async () => {
    const room = freshRoom();
    const rows = dataset();
    await putProps(room, rows);
    const socket = await connect(room);
    subscribe(socket, "hi", { where: { a: { gte: 10 } } });
    await socket.nextPoke("hi");
    const row = (id: string) => ({ ...rows.find((candidate) => candidate.id === id)! });

    let seen = socket.pokes.length;
    await putProps(room, [{ ...row("p01"), a: 50 }]); // NULL → 50: enters
    let poke = await socket.nextPoke("hi", seen);
    expect(poke.ops).toEqual([{ op: "put", sub: "hi", key: "p01", row: { id: "p01", grp: "g1", a: 50, b: -1.25, c: "a" } }]);

    seen = socket.pokes.length;
    await putProps(room, [{ ...row("p13"), a: 3 }]); // 12 → 3: leaves
    poke = await socket.nextPoke("hi", seen);
    expect(poke.ops).toEqual([{ op: "del", sub: "hi", key: "p13" }]);

    seen = socket.pokes.length;
    await putProps(room, [{ ...row("p02"), a: 4 }]); // 1 → 4: outside before and after
    await putProps(room, [{ ...row("p07"), c: "changed" }, { ...row("q1"), a: 99 }]); // other group
    await putProps(room, [{ ...row("p03"), a: 10 }]); // enters: the marker
    poke = await socket.nextPoke("hi", seen);
    expect(socket.pokes.length).toBe(seen + 1);
    expect(poke.ops.map((op) => [op.op, op.key])).toEqual([["put", "p03"]]);

    // A row hidden by the read rule leaves too, and never shows its hidden value.
    seen = socket.pokes.length;
    await putProps(room, [{ ...row("p14"), hidden: "secret" }]);
    poke = await socket.nextPoke("hi", seen);
    expect(poke.ops).toEqual([{ op: "del", sub: "hi", key: "p14" }]);
    expect(keysOf(socket, "hi")).toEqual(await sqlIds(room, "a >= 10"));
  });

  test("a limited subset stays its resolved predicate: rows under the boundary enter live, and a resetEpoch resends that predicate's rows, not a new cut", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    subscribe(socket, "top", { limit: { count: 3, column: "a", desc: true, nullsLast: true } });
    const first = await socket.nextPoke("top");
    expect(first.subsets).toEqual([{ sub: "top", where: { a: { gte: 12 } } }]);
    expect(keysOf(socket, "top")).toEqual(["p13", "p14", "p16", "p17"]);
    let seen = socket.pokes.length;
    await putProps(room, [{ id: "big", grp: "g1", a: 100, b: null, c: null, hidden: null }]);
    await socket.nextPoke("top", seen);
    expect(keysOf(socket, "top")).toEqual(["big", "p13", "p14", "p16", "p17"]);

    seen = socket.pokes.length;
    const { epoch } = await roomCall<{ epoch: string }>(worker, room, "/lunora/reset-epoch");
    const reset = await socket.nextPoke("top", seen);
    expect(reset.resets).toEqual(["top"]);
    expect(reset.subsets).toBeUndefined();
    expect(keysOf(socket, "top")).toEqual(["big", "p13", "p14", "p16", "p17"]);
    // One reset, one new epoch: the emptied log must not read as history that went back.
    expect(reset.cursor.epoch).toBe(epoch);
    expect((await roomCall<{ epoch: string }>(worker, room, "/lunora/state")).epoch).toBe(epoch);
    expect(socket.frames.filter((frame) => frame.type === "hello").length).toBe(2);
  });
});

describe("resume with the resolved predicate", () => {
  async function subscribeLimited(room: string): Promise<{ where: unknown; cursor: Cursor; keys: string[] }> {
    const socket = await connect(room);
    subscribe(socket, "s", { where: { c: { ne: null } }, limit: { count: 5, column: "b" } });
    const poke = await socket.nextPoke("s");
    const where = poke.subsets![0].where;
    const result = { where, cursor: socket.cursor("s")!, keys: keysOf(socket, "s") };
    await socket.close();
    return result;
  }

  async function resume(room: string, where: unknown, cursor: Cursor): Promise<AssembledPoke> {
    const socket = await connect(room);
    subscribe(socket, "s", { where }, { cursor });
    return socket.nextPoke("s");
  }

  const changes = (): Prop[] => [
    { id: "in-low", grp: "g1", a: 1, b: -100, c: "x", hidden: null }, // enters: b below the boundary
    { id: "out-high", grp: "g1", a: 1, b: 1000, c: "x", hidden: null }, // past the boundary
    { id: "out-null-c", grp: "g1", a: 1, b: -100, c: null, hidden: null }, // fails the where
  ];

  test("after a socket drop: only the delta, no reset, no new cut", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const first = await subscribeLimited(room);
    expect(first.where).toEqual({ $and: [{ c: { ne: null } }, { $or: [{ b: null }, { b: { lte: -1.25 } }] }] });
    await putProps(room, changes(), ["p12"]); // p12 is inside (b NULL): deleted
    const poke = await resume(room, first.where, first.cursor);
    expect(poke.resets).toEqual([]);
    expect(poke.subsets).toBeUndefined();
    expect(poke.ops.map((op) => [op.op, op.key]).sort()).toEqual([
      ["del", "p12"],
      ["put", "in-low"],
    ]);
  });

  test("past a trimmed log: a reset to the same predicate's rows, with no new cut and no `subsets`", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const first = await subscribeLimited(room);
    // 600 changes past the cursor, then a sweep down to the fixture's 500 log rows.
    const churn = Array.from({ length: 600 }, (_, i): Prop => ({ id: `churn${i}`, grp: "g2", a: i, b: -100, c: "x", hidden: null }));
    await putProps(room, [...changes(), ...churn]);
    const { trimmedThrough } = await roomCall<{ trimmedThrough: number }>(worker, room, "/lunora/sweep");
    expect(trimmedThrough).toBeGreaterThan(first.cursor.seq);
    const socket = await connect(room);
    subscribe(socket, "s", { where: first.where }, { cursor: first.cursor });
    const poke = await socket.nextPoke("s");
    expect(poke.resets).toEqual(["s"]);
    expect(poke.subsets).toBeUndefined();
    // The old cut (b ≤ -1.25 or NULL) plus the row that entered it: not "the first 5" again.
    expect(keysOf(socket, "s")).toEqual([...first.keys, "in-low"].sort());
    expect(keysOf(socket, "s")).toEqual(await sqlIds(room, "c IS NOT NULL AND (b IS NULL OR b <= -1.25)"));
  });

  test("after a restart of the room: only the delta", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const first = await subscribeLimited(room);
    await worker.restart();
    await putProps(room, changes());
    const poke = await resume(room, first.where, first.cursor);
    expect(poke.resets).toEqual([]);
    expect(poke.ops.map((op) => [op.op, op.key])).toEqual([["put", "in-low"]]);
  });
});

describe("hostile subsets: a coded error on that subscription, the socket and the other subscriptions go on", () => {
  const deep = (depth: number): unknown => (depth === 0 ? { a: 1 } : { $not: deep(depth - 1) });
  const cases: Array<{ name: string; subset: unknown; raw?: string }> = [
    { name: "hidden column", subset: { where: { hidden: "secret" } } },
    { name: "hidden column inside $or", subset: { where: { $or: [{ a: 1 }, { hidden: { ne: null } }] } } },
    { name: "another table's column", subset: { where: { listId: "l1" } } },
    { name: "__proto__ as a column", subset: undefined, raw: '{"where":{"__proto__":{"eq":1}}}' },
    { name: "constructor as a column", subset: { where: { constructor: 1 } } },
    { name: "__proto__ as a limit column", subset: { limit: { count: 1, column: "__proto__" } } },
    { name: "unknown operator", subset: { where: { c: { like: "%" } } } },
    { name: "SQL as an operator", subset: { where: { a: { "= 1 OR 1": 1 } } } },
    { name: "depth 40", subset: { where: deep(40) } },
    { name: "100,000-deep array", subset: undefined, raw: `{"where":${"[".repeat(100_000)}${"]".repeat(100_000)}}` },
    { name: "100,000-item in list", subset: { where: { a: { in: Array.from({ length: 100_000 }, (_, i) => i) } } } },
    { name: "101 bound parameters", subset: { where: { $or: Array.from({ length: 101 }, (_, i) => ({ a: i })) } } },
    { name: "limit.count 0", subset: { limit: { count: 0, column: "a" } } },
    { name: "limit.count 10,001", subset: { limit: { count: 10_001, column: "a" } } },
    { name: "limit.count 1.5", subset: { limit: { count: 1.5, column: "a" } } },
    { name: "limit on a hidden column", subset: { limit: { count: 1, column: "hidden" } } },
    { name: "after naming a hidden column", subset: { limit: { count: 1, column: "a", after: { hidden: "secret" } } } },
    { name: "limit with an unknown field", subset: { limit: { count: 1, column: "a", orderBy: "hidden" } } },
    { name: "subset with an unknown field", subset: { where: true, order: "a" } },
    { name: "non-object subset (string)", subset: "a > 1" },
    { name: "non-object subset (array)", subset: [{ a: 1 }] },
    { name: "null subset", subset: null },
    { name: "non-object where", subset: { where: "1=1" } },
    { name: "where as an array", subset: { where: [{ a: 1 }] } },
    { name: "JSON over 4 KiB", subset: { where: { c: "x".repeat(MAX_SUBSET_CHARS) } } },
  ];

  test(`${cases.length} cases`, async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    subscribe(socket, "bystander", { where: { a: { gte: 10 } } });
    await socket.nextPoke("bystander");
    for (const [i, testCase] of cases.entries()) {
      const errors = socket.errors.length;
      const id = `h${i}`;
      if (testCase.raw !== undefined) socket.send(`{"type":"subscribe","id":"${id}","source":${JSON.stringify(source())},"subset":${testCase.raw}}`);
      else subscribe(socket, id, testCase.subset);
      const error = await socket.nextError(errors);
      expect({ name: testCase.name, sub: error.sub, code: error.error.code }).toEqual({ name: testCase.name, sub: id, code: "INVALID_ARGS" });
    }
    // No frame-level error, no poke for a refused subscription, the socket is open, the bystander is live.
    expect(socket.errors.every((error) => error.sub !== undefined)).toBe(true);
    expect(socket.pokes.flatMap((poke) => poke.subs).filter((sub) => sub !== "bystander")).toEqual([]);
    expect(socket.closed).toBeNull();
    expect(socket.raw.join("\n")).not.toContain("secret");
    const seen = socket.pokes.length;
    await putProps(room, [{ id: "after", grp: "g1", a: 99, b: null, c: null, hidden: null }]);
    expect((await socket.nextPoke("bystander", seen)).ops.map((op) => op.key)).toEqual(["after"]);
  });

  test("the bound on parameters counts the whole predicate, and a subset at the bound still streams its snapshot", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    // The shape's `grp` and the read rule's `hidden` take two parameters, a
    // snapshot page one more: 97 are left for the subset.
    const ors = (n: number) => ({ where: { $or: Array.from({ length: n }, (_, i) => ({ a: i - 4 })) } });
    subscribe(socket, "at", ors(97));
    subscribe(socket, "past", ors(98));
    const poke = await socket.nextPoke("at");
    expect(keysOf(socket, "at")).toEqual(await sqlIds(room, "a BETWEEN -4 AND 92"));
    expect(poke.ops.length).toBeGreaterThan(0);
    const error = await waitFor(() => socket.errors.find((candidate) => candidate.sub === "past"), { message: "past refused" });
    expect(error.error.code).toBe("INVALID_ARGS");
    expect(socket.errors.filter((candidate) => candidate.sub === "at")).toEqual([]);
  });

  test("subsets count towards the socket's 16 KiB attachment: QUOTA_EXCEEDED on the one that does not fit", async () => {
    const room = freshRoom();
    await putProps(room, dataset());
    const socket = await connect(room);
    // Each subset is just under MAX_SUBSET_CHARS; about three fit in an attachment.
    const big = (i: number) => ({ where: { c: { in: [`${i}`, "x".repeat(MAX_SUBSET_CHARS - 64)] } } });
    for (let i = 0; i < 6; i++) subscribe(socket, `big${i}`, big(i));
    await waitFor(() => socket.pokes.length + socket.errors.length >= 6, { message: "every subscribe answered" });
    const refused = socket.errors.map((error) => [error.sub, error.error.code]);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every(([, code]) => code === "QUOTA_EXCEEDED")).toBe(true);
    expect(socket.pokes.length).toBe(6 - refused.length);
    // The socket goes on: a small subscription still fits after an unsubscribe.
    socket.send({ type: "unsubscribe", id: "big0" });
    subscribe(socket, "small", { where: { a: 1 } });
    const poke = await socket.nextPoke("small");
    expect(poke.ops.map((op) => op.key)).toEqual(await sqlIds(room, "a = 1"));
  });
});

// Slow by nature: an idle window past the ~10 s eviction.
test("hibernation: a woken room keeps each socket's resolved subset", async () => {
  const room = freshRoom();
  await putProps(room, dataset());
  const socket = await connect(room);
  subscribe(socket, "top", { limit: { count: 2, column: "b", desc: true, nullsLast: true } });
  const first = await socket.nextPoke("top");
  expect(first.subsets).toEqual([{ sub: "top", where: { b: { gte: 42 } } }]);
  const before = await roomCall<{ constructed: number }>(worker, room, "/wakes");

  await new Promise((resolve) => setTimeout(resolve, 12_000));
  const seen = socket.pokes.length;
  await putProps(room, [
    { id: "below", grp: "g1", a: 1, b: 41, c: null, hidden: null },
    { id: "above", grp: "g1", a: 1, b: 43, c: null, hidden: null },
  ]);
  const after = await roomCall<{ constructed: number }>(worker, room, "/wakes");
  expect(after.constructed).toBeGreaterThan(before.constructed);
  const poke = await socket.nextPoke("top", seen);
  expect(poke.ops.map((op) => [op.op, op.key])).toEqual([["put", "above"]]);
  expect(poke.subsets).toBeUndefined();
  expect(socket.errors).toEqual([]);
  expect(socket.closed).toBeNull();
}, 60_000);
