/**
 * Bad input from a room (a buggy or hostile server, a proxy mangling frames),
 * as a corpus: the client must report a coded error or reset the affected
 * subscription, must never apply part of a broken poke, and must keep working
 * — a valid poke after each case still applies. The number of cases is printed.
 */
import { expect, test } from "vitest";
import type { OpBlock } from "../../src/protocol/index.js";
import { startHarness } from "../client/helpers/harness.js";
import { eventually } from "../client/helpers/eventually.js";
import { messagesCollection, put, rowsOf } from "../client/helpers/rows.js";
import { groupOf } from "../client/helpers/scripted-room.js";

type Frame = string | object | Buffer;
interface Case {
  name: string;
  /** Frames the room sends; `sub` is the subscription id, `n` a fresh number. */
  frames: (sub: string, n: number) => Frame[];
  /** What the client must do: report a coded error, or drop the poke and resubscribe without cursor. */
  expect: { error: string } | { resubscribe: true; because?: string } | { ignored: true };
}

const cursor = (seq: number) => ({ seq, epoch: "epoch-1" });
/** The columns the corpus binds `messages` with. */
const COLUMNS = ["id", "text"];
const NEVER = "must never be applied";
const evilRow = (n: number) => ({ id: `evil-${n}`, text: NEVER });
const evil = (sub: string, n: number): OpBlock => put(sub, evilRow(n));
/** A one-frame poke (no binds): only `ops` and `cursor` vary. */
const poke = (id: string, ops: unknown[], seq: number, extra: object = {}) => ({ type: "poke", pokeId: id, ...extra, ops, cursor: cursor(seq) });

const CASES: Case[] = [
  { name: "malformed JSON", frames: () => ['{"type":"poke'], expect: { error: "PROTOCOL_ERROR" } },
  { name: "not an object", frames: () => ["7"], expect: { error: "PROTOCOL_ERROR" } },
  { name: "unknown frame type", frames: () => [{ type: "rm -rf" }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "binary frame", frames: () => [Buffer.from([1, 2, 3])], expect: { error: "PROTOCOL_ERROR" } },
  { name: "client frame sent by the room", frames: (sub) => [{ type: "subscribe", id: sub, source: { list: "messages" } }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "poke with a negative cursor", frames: (sub, n) => [{ type: "poke", pokeId: `p${n}`, ops: [evil(sub, n)], cursor: { seq: -1, epoch: "e" } }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "poke with an unknown field (protocol 3's subs)", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n)], 1000 + n, { subs: [sub] })], expect: { error: "PROTOCOL_ERROR" } },
  { name: "ops not an array", frames: (sub, n) => [poke(`p${n}`, { [groupOf(sub)]: evilRow(n) } as never, 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "block not an array (a protocol 3 op)", frames: (sub, n) => [poke(`p${n}`, [{ op: "put", sub, key: `evil-${n}`, row: evilRow(n) }], 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "block of unknown kind", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n), [groupOf(sub), "truncate", "m1"]], 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "block without a group", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n), [null, "p", evilRow(n)]], 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "a put row that is an array", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n), [groupOf(sub), "p", [`evil-${n}`, NEVER]]], 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "a delete with an object key", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n), [groupOf(sub), "d", { $gt: "" }]], 1000 + n)], expect: { error: "PROTOCOL_ERROR" } },
  { name: "a bind that is not an object", frames: (sub, n) => [poke(`p${n}`, [evil(sub, n)], 1000 + n, { bind: [sub] })], expect: { error: "PROTOCOL_ERROR" } },
  { name: "frame over 1 MiB", frames: (sub, n) => [poke(`p${n}`, [put(sub, { id: `big-${n}`, text: "x".repeat(1_100_000) })], 1000 + n)], expect: { error: "MESSAGE_TOO_LARGE" } },
  { name: "pokePart without pokeStart", frames: (sub, n) => [{ type: "pokePart", pokeId: `orphan-${n}`, ops: [evil(sub, n)] }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "pokeEnd without pokeStart", frames: (_sub, n) => [{ type: "pokeEnd", pokeId: `orphan-${n}`, cursor: cursor(n) }], expect: { error: "PROTOCOL_ERROR" } },
  {
    name: "interleaved pokes",
    frames: (sub, n) => [
      { type: "pokeStart", pokeId: `a${n}` },
      { type: "pokePart", pokeId: `a${n}`, ops: [evil(sub, n)] },
      { type: "pokeStart", pokeId: `b${n}` },
      { type: "pokeEnd", pokeId: `b${n}`, cursor: cursor(1000 + n) },
      { type: "pokeEnd", pokeId: `a${n}`, cursor: cursor(1000 + n) },
    ],
    expect: { resubscribe: true },
  },
  {
    name: "part naming another poke",
    frames: (sub, n) => [
      { type: "pokeStart", pokeId: `c${n}` },
      { type: "pokePart", pokeId: `other-${n}`, ops: [evil(sub, n)] },
      { type: "pokeEnd", pokeId: `c${n}`, cursor: cursor(1000 + n) },
    ],
    expect: { resubscribe: true },
  },
  {
    name: "garbage in the middle of a poke",
    frames: (sub, n) => [{ type: "pokeStart", pokeId: `e${n}` }, { type: "pokePart", pokeId: `e${n}`, ops: [evil(sub, n)] }, "{oops", { type: "pokeEnd", pokeId: `e${n}`, cursor: cursor(1000 + n) }],
    expect: { resubscribe: true },
  },
  { name: "a put whose row has no key", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "p", { text: NEVER }]], 1000 + n)], expect: { resubscribe: true, because: "lacks column \"id\"" } },
  { name: "a put with a null key", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "p", { id: null, text: NEVER }]], 1000 + n)], expect: { resubscribe: true, because: "no string or finite-number key" } },
  { name: "a put missing a column of its binding", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "p", { id: `evil-x${n}` }]], 1000 + n)], expect: { resubscribe: true, because: "lacks column \"text\"" } },
  { name: "a patch with a foreign column", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "u", { id: "m1", text: NEVER, secret: 1 }]], 1000 + n)], expect: { resubscribe: true, because: "names column \"secret\" outside its binding" } },
  { name: "a patch without its key", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "u", { text: NEVER }]], 1000 + n)], expect: { resubscribe: true, because: "patch 2 has no string or finite-number key" } },
  {
    name: "a patch naming __proto__",
    frames: (sub, n) => [`{"type":"poke","pokeId":"f${n}","ops":[["${groupOf(sub)}","u",{"id":"m1","__proto__":{"text":"${NEVER}"}}]],"cursor":{"seq":${1000 + n},"epoch":"epoch-1"}}`],
    expect: { resubscribe: true, because: "names column \"__proto__\" outside its binding" },
  },
  { name: "a patch for a key the subscription does not hold", frames: (sub, n) => [poke(`f${n}`, [evil(sub, n), [groupOf(sub), "u", { id: `ghost-${n}`, text: NEVER }]], 1000 + n)], expect: { resubscribe: true, because: "that the subscription does not hold" } },
  { name: "a reset of a subscription that is not bound", frames: (sub, n) => [poke(`r${n}`, [evil(sub, n)], 1000 + n, { resets: ["nobody"] })], expect: { resubscribe: true, because: "resets subscription \"nobody\" that is not bound" } },
  { name: "a reset of constructor", frames: (sub, n) => [poke(`r${n}`, [evil(sub, n)], 1000 + n, { resets: ["constructor"] })], expect: { resubscribe: true, because: "resets subscription \"constructor\" that is not bound" } },
  {
    name: "a bind whose key is not one of its columns",
    frames: (sub, n) => [poke(`r${n}`, [evil(sub, n)], 1000 + n, { bind: [{ sub, group: groupOf(sub), key: "uuid", columns: COLUMNS }] })],
    expect: { resubscribe: true, because: "outside its columns" },
  },
  {
    name: "a bind with a constructor column, and a put without it",
    frames: (sub, n) => [poke(`r${n}`, [evil(sub, n)], 1000 + n, { bind: [{ sub, group: groupOf(sub), key: "id", columns: [...COLUMNS, "constructor"] }] })],
    expect: { resubscribe: true, because: "lacks column \"constructor\"" },
  },
  { name: "ops for a group no subscription is bound to", frames: (sub, n) => [poke(`h${n}`, [evil(`not-${sub}`, n), ["g.nobody", "u", { id: "m1", text: NEVER }]], 1000 + n)], expect: { ignored: true } },
  { name: "__proto__ and constructor as group ids", frames: (_sub, n) => [poke(`h${n}`, [["__proto__", "p", evilRow(n)], ["constructor", "u", { id: "m1", text: NEVER }], ["toString", "d", "m1"]], 1000 + n)], expect: { ignored: true } },
  {
    name: "__proto__ as a subscription id (bound, reset, its group fed)",
    frames: (_sub, n) => [poke(`h${n}`, [["__proto__", "p", evilRow(n)]], 1000 + n, { bind: [{ sub: "__proto__", group: "__proto__", key: "id", columns: COLUMNS }], resets: ["__proto__"] })],
    expect: { ignored: true },
  },
  { name: "error for an unknown subscription", frames: () => [{ type: "error", sub: "nobody", error: { code: "FORBIDDEN", message: "x" } }], expect: { ignored: true } },
  { name: "outcomes for writes never made", frames: (_sub, n) => [poke(`g${n}`, [], 1, { mutations: [{ clientSeq: 99, status: "applied" }] })], expect: { ignored: true } },
  {
    name: "a bind for a subscription that does not exist",
    frames: (_sub, n) => [poke(`h${n}`, [evil("ghost", n)], 1, { bind: [{ sub: "ghost", group: groupOf("ghost"), key: "id", columns: COLUMNS }] })],
    expect: { ignored: true },
  },
];

test(`room → client bad-input corpus (${CASES.length} cases): coded errors or resets, never a partial poke`, async () => {
  const h = await startHarness();
  const { collection, errors } = messagesCollection(h.client);
  const ready = collection.preload();
  let socket = await h.room.socket();
  socket.hello();
  let sub = (await socket.subscribeFrame()).id!;
  socket.poke({ pokeId: "init", subs: [sub], columns: COLUMNS, resets: [sub], parts: [[put(sub, { id: "m1", text: "hello" })]], cursor: cursor(1) });
  await ready;

  let n = 0;
  for (const testCase of CASES) {
    n++;
    const clientErrors = h.clientErrors.length;
    const subscribes = socket.subscribes.length;
    for (const frame of testCase.frames(sub, n)) socket.send(frame as object);
    if ("error" in testCase.expect) {
      const code = testCase.expect.error;
      await eventually(() => expect(h.clientErrors.slice(clientErrors).map((e) => e.error.code)).toContain(code));
    } else if ("resubscribe" in testCase.expect) {
      const again = await socket.subscribeFrame(subscribes);
      const because = testCase.expect.because;
      if (because !== undefined) expect({ case: testCase.name, errors: h.clientErrors.slice(clientErrors).map((e) => e.error.message) }).toEqual({ case: testCase.name, errors: [expect.stringContaining(because)] });
      expect({ case: testCase.name, cursor: again.cursor }).toEqual({ case: testCase.name, cursor: undefined });
      sub = again.id!;
      // The room answers the resubscribe with a reset; the client accepts it.
      socket.poke({ pokeId: `reset-${n}`, subs: [sub], columns: COLUMNS, resets: [sub], parts: [[put(sub, { id: "m1", text: "hello" })]], cursor: cursor(2000 + n) });
    }
    // Whatever happened, a valid poke still applies and nothing of the broken one did.
    socket.poke({ pokeId: `ok-${n}`, parts: [[put(sub, { id: `ok-${n}`, text: "fine" })]], cursor: cursor(3000 + n) });
    await eventually(() => expect(collection.has(`ok-${n}`)).toBe(true));
    expect({ case: testCase.name, evil: rowsOf(collection).filter((row) => String(row.id).startsWith("evil") || row.text === NEVER || Object.keys(row).length !== 2) }).toEqual({
      case: testCase.name,
      evil: [],
    });
    expect({ case: testCase.name, polluted: ({} as { text?: unknown }).text }).toEqual({ case: testCase.name, polluted: undefined });
    if ("ignored" in testCase.expect) {
      // Ignored means ignored: nothing reported, nobody subscribed again.
      expect({ case: testCase.name, errors: h.clientErrors.slice(clientErrors), subscribes: socket.subscribes.length }).toEqual({ case: testCase.name, errors: [], subscribes });
    }
    expect(h.client.status).toBe("connected");
    socket = await h.room.socket(h.room.sockets.length - 1);
  }
  expect(errors.filter((error) => error.code !== "INTERNAL")).toEqual([]);
  console.log(`[corpus] room → client: ${CASES.length} cases`);
});
