/**
 * Bad input from a client, as a corpus: every case must get a coded error
 * (or be ignored where the protocol says so), never crash the room, never
 * leak a row, and leave a bystander on the same room unharmed. The number of
 * cases is printed.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { putItems, roomCall, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom({ preventEviction: true });
});
afterAll(() => worker?.stop());

type Expect =
  | { frameError: string }
  | { subError: string; sub: string }
  | { outcome: string; status: "rejected" | "error" }
  | { emptySnapshot: string }
  | { snapshot: string; keys: string[] };

interface Case {
  name: string;
  send: string | object;
  expect: Expect;
}

const sub = (id: string, source: object, extra: object = {}) => ({ type: "subscribe", id, source, ...extra });
const push = (mutations: object[], clientId = randomUUID()) => ({ type: "push", clientId, mutations });
const items = { shape: "itemsByList", args: { listId: "L" } };
const deepNot = (depth: number): object => (depth === 0 ? { rank: 1 } : { $not: deepNot(depth - 1) });

const CASES: Case[] = [
  // Framing and types
  { name: "malformed JSON", send: "{\"type\":", expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "not an object", send: "42", expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "JSON null", send: "null", expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "array", send: "[]", expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "empty string", send: "", expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "unknown type", send: { type: "dropTable" }, expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "missing type", send: { id: "x" }, expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "room frame sent by a client", send: { type: "pokeEnd", pokeId: "p", cursor: { seq: 1, epoch: "e" } }, expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "subscribe id of wrong type", send: sub(7 as unknown as string, { list: "items" }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "subscribe id too long", send: sub("x".repeat(129), { list: "items" }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "source with extra SQL field", send: sub("a", { list: "items", where: "1=1" }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "source naming both list and shape", send: sub("a", { list: "items", shape: "itemsByList" }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "cursor with negative seq", send: sub("a", { list: "items" }, { cursor: { seq: -1, epoch: "e" } }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "cursor with fractional seq", send: sub("a", { list: "items" }, { cursor: { seq: 1.5, epoch: "e" } }), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "push without mutations", send: push([]), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "push with clientSeq 0", send: push([{ clientSeq: 0, name: "items:create", args: {} }]), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "push with more than 5,000 mutations", send: push(Array.from({ length: 5_001 }, (_, i) => ({ clientSeq: i + 1, name: "x" }))), expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "ack with negative count", send: { type: "ack", received: -5 }, expect: { frameError: "PROTOCOL_ERROR" } },
  { name: "frame over 1,000,000 bytes", send: sub("big", { shape: "itemsByList", args: { listId: "z".repeat(1_000_100) } }), expect: { frameError: "MESSAGE_TOO_LARGE" } },
  // Names the room did not define
  { name: "list of the change log", send: sub("log", { list: "__cdc_log" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "log" } },
  { name: "list of the meta table", send: sub("meta", { list: "__lunora_meta" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "meta" } },
  { name: "list of the room's own table", send: sub("own", { list: "visits" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "own" } },
  { name: "list named __proto__", send: sub("proto", { list: "__proto__" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "proto" } },
  { name: "shape named constructor", send: sub("ctor", { shape: "constructor" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "ctor" } },
  { name: "shape named toString", send: sub("ts", { shape: "toString" }), expect: { subError: "SHAPE_NOT_FOUND", sub: "ts" } },
  // Args escaping the predicate
  { name: "args with SQL in a value", send: sub("sql1", { shape: "itemsByList", args: { listId: "1=1) OR (1=1" } }), expect: { emptySnapshot: "sql1" } },
  { name: "args with a quote", send: sub("sql2", { shape: "itemsByList", args: { listId: "' OR ''='" } }), expect: { emptySnapshot: "sql2" } },
  // Unknown args are stripped by the schema; the read rule still hides secret rows.
  { name: "args naming another column", send: sub("col", { shape: "itemsByList", args: { listId: "L", secret: 1 } }), expect: { snapshot: "col", keys: ["visible"] } },
  { name: "args of the wrong type", send: sub("t1", { shape: "itemsByList", args: { listId: { $ne: null } } }), expect: { subError: "INVALID_ARGS", sub: "t1" } },
  { name: "args missing", send: sub("t2", { shape: "itemsByList" }), expect: { subError: "INVALID_ARGS", sub: "t2" } },
  { name: "zod args of the wrong type", send: sub("t3", { shape: "itemsRankAtLeast", args: { min: "0 OR 1" } }), expect: { subError: "INVALID_ARGS", sub: "t3" } },
  { name: "arktype args of the wrong type", send: sub("t4", { shape: "itemsByTitle", args: { title: 5 } }), expect: { subError: "INVALID_ARGS", sub: "t4" } },
  // On-demand subsets: only projected columns, bounded size and depth (itemsByList projects id, listId, title, rank)
  { name: "subset filtering on a hidden column", send: sub("ss1", items, { subset: { where: { secret: 1 } } }), expect: { subError: "INVALID_ARGS", sub: "ss1" } },
  { name: "subset sorting on a hidden column", send: sub("ss2", items, { subset: { limit: { count: 1, column: "secret" } } }), expect: { subError: "INVALID_ARGS", sub: "ss2" } },
  { name: "subset load-more after a hidden column", send: sub("ss3", items, { subset: { limit: { count: 1, column: "rank", after: { secret: { gt: 0 } } } } }), expect: { subError: "INVALID_ARGS", sub: "ss3" } },
  { name: "subset naming another table's column", send: sub("ss4", items, { subset: { where: { ownerId: "alice" } } }), expect: { subError: "INVALID_ARGS", sub: "ss4" } },
  { name: "subset column __proto__", send: `{"type":"subscribe","id":"ss5","source":{"shape":"itemsByList","args":{"listId":"L"}},"subset":{"where":{"__proto__":{"ne":null}}}}`, expect: { subError: "INVALID_ARGS", sub: "ss5" } },
  { name: "subset column constructor", send: sub("ss6", items, { subset: { where: { constructor: { ne: null } } } }), expect: { subError: "INVALID_ARGS", sub: "ss6" } },
  { name: "subset with SQL as an operator", send: sub("ss7", items, { subset: { where: { title: { "= '' OR 1=1 --": 1 } } } }), expect: { subError: "INVALID_ARGS", sub: "ss7" } },
  { name: "subset 40 deep", send: sub("ss8", items, { subset: { where: deepNot(40) } }), expect: { subError: "INVALID_ARGS", sub: "ss8" } },
  { name: "subset with a 100,000-item in list", send: sub("ss9", items, { subset: { where: { rank: { in: Array.from({ length: 100_000 }, (_, i) => i) } } } }), expect: { subError: "INVALID_ARGS", sub: "ss9" } },
  { name: "subset limit.count 0", send: sub("ss10", items, { subset: { limit: { count: 0, column: "rank" } } }), expect: { subError: "INVALID_ARGS", sub: "ss10" } },
  { name: "subset that is not an object", send: sub("ss11", items, { subset: "rank > 0" }), expect: { subError: "INVALID_ARGS", sub: "ss11" } },
  // A valid subset still never reveals a row the read rule hides.
  { name: "subset over every row", send: sub("ss12", items, { subset: { where: { listId: "L" }, limit: { count: 10, column: "title", lexical: true } } }), expect: { snapshot: "ss12", keys: ["visible"] } },
  // Writes
  { name: "unknown mutator", send: push([{ clientSeq: 1, name: "items:dropAll" }]), expect: { outcome: "UNKNOWN_MUTATOR", status: "rejected" } },
  { name: "mutator named __proto__", send: push([{ clientSeq: 1, name: "__proto__" }]), expect: { outcome: "UNKNOWN_MUTATOR", status: "rejected" } },
  { name: "mutator args failing validation", send: push([{ clientSeq: 1, name: "items:create", args: { id: 1 } }]), expect: { outcome: "INVALID_ARGS", status: "rejected" } },
  { name: "client-proposed id that is not a UUID", send: push([{ clientSeq: 1, name: "items:create", args: { id: "victim-row", listId: "L", title: "x" } }]), expect: { outcome: "INVALID_ARGS", status: "rejected" } },
  { name: "gapped clientSeq", send: push([{ clientSeq: 5, name: "items:create", args: {} }]), expect: { outcome: "OUT_OF_ORDER", status: "error" } },
];

test(`client → room bad-input corpus (${CASES.length} cases): coded errors, nobody else harmed`, async () => {
  const room = "corpus";
  await putItems(worker, room, [{ id: "visible", listId: "L", title: "v" }, { id: "secret-row", listId: "L", title: "s", secret: 1 }]);
  const bystander = await RawSocket.connect(worker.host, room, { token: "user:bystander" });
  bystander.subscribe("s", { list: "items" });
  await bystander.nextPoke("s");
  const attacker = await RawSocket.connect(worker.host, room, { token: "user:attacker" });
  await waitFor(() => attacker.frames.length > 0);

  for (const testCase of CASES) {
    const errors = attacker.errors.length;
    const pokes = attacker.pokes.length;
    attacker.send(typeof testCase.send === "string" ? testCase.send : JSON.stringify(testCase.send));
    const expected = testCase.expect;
    if ("frameError" in expected) {
      const error = await attacker.nextError(errors);
      expect({ case: testCase.name, sub: error.sub, code: error.error.code }).toEqual({ case: testCase.name, sub: undefined, code: expected.frameError });
    } else if ("subError" in expected) {
      const error = await attacker.nextError(errors);
      expect({ case: testCase.name, sub: error.sub, code: error.error.code }).toEqual({ case: testCase.name, sub: expected.sub, code: expected.subError });
    } else if ("snapshot" in expected) {
      const poke = await attacker.nextPoke(expected.snapshot, pokes);
      expect({ case: testCase.name, keys: poke.ops.map((op) => op.key) }).toEqual({ case: testCase.name, keys: expected.keys });
    } else if ("emptySnapshot" in expected) {
      const poke = await attacker.nextPoke(expected.emptySnapshot, pokes);
      expect({ case: testCase.name, ops: poke.ops }).toEqual({ case: testCase.name, ops: [] });
    } else {
      const poke = await waitFor(() => attacker.pokes.slice(pokes).find((p) => p.mutations), { message: testCase.name });
      const outcome = poke.mutations![0];
      expect({ case: testCase.name, status: outcome.status, code: "error" in outcome ? outcome.error.code : null }).toEqual({
        case: testCase.name,
        status: expected.status,
        code: expected.outcome,
      });
    }
  }
  // The attacker never saw the secret row, the room is alive, the bystander is served.
  expect(attacker.raw.join("\n")).not.toContain("secret-row");
  expect(attacker.closed).toBeNull();
  const seen = bystander.pokes.length;
  await putItems(worker, room, { id: "after", listId: "L", title: "a" });
  expect((await bystander.nextPoke("s", seen)).ops.map((op) => op.key)).toEqual(["after"]);
  expect((await roomCall<Array<{ id: string }>>(worker, room, "/items")).map((row) => row.id).sort()).toEqual(["after", "secret-row", "visible"]);
  console.log(`[corpus] client → room: ${CASES.length} cases`);
  await Promise.all([bystander.close(), attacker.close()]);
}, 120_000);

test("thousands of subscriptions on one socket: QUOTA_EXCEEDED past the bound, the socket stays usable", async () => {
  const room = "corpus-subs";
  const socket = await RawSocket.connect(worker.host, room);
  await waitFor(() => socket.frames.length > 0);
  for (let i = 0; i < 3_000; i++) socket.subscribe(`s${i}`, { shape: "itemsByList", args: { listId: `l${i}` } });
  await waitFor(() => socket.pokes.length + socket.errors.length >= 3_000, { message: "every subscribe answered", timeoutMs: 60_000 });
  expect(socket.pokes.length).toBe(100);
  expect(new Set(socket.errors.map((error) => error.error.code))).toEqual(new Set(["QUOTA_EXCEEDED"]));
  const seen = socket.pokes.length;
  await putItems(worker, room, { id: "x", listId: "l0", title: "x" });
  expect((await socket.nextPoke("s0", seen)).ops.map((op) => op.key)).toEqual(["x"]);
  await socket.close();
}, 120_000);
