/**
 * Bad input from a room (a buggy or hostile server, a proxy mangling frames),
 * as a corpus: the client must report a coded error or reset the affected
 * subscription, must never apply part of a broken poke, and must keep working
 * — a valid poke after each case still applies. The number of cases is printed.
 */
import { expect, test } from "vitest";
import type { RowOp } from "../../src/protocol/index.js";
import { startHarness } from "../client/helpers/harness.js";
import { eventually } from "../client/helpers/eventually.js";
import { messagesCollection, put, rowsOf } from "../client/helpers/rows.js";

type Frame = string | object | Buffer;
interface Case {
  name: string;
  /** Frames the room sends; `sub` is the subscription id, `n` a fresh number. */
  frames: (sub: string, n: number) => Frame[];
  /** What the client must do: report a coded error, or drop the poke and resubscribe without cursor. */
  expect: { error: string } | { resubscribe: true } | { ignored: true };
}

const cursor = (seq: number) => ({ seq, epoch: "epoch-1" });
const evil = (sub: string, n: number): RowOp => put(sub, { id: `evil-${n}`, text: "must never be applied" });

const CASES: Case[] = [
  { name: "malformed JSON", frames: () => ['{"type":"poke'], expect: { error: "PROTOCOL_ERROR" } },
  { name: "not an object", frames: () => ["7"], expect: { error: "PROTOCOL_ERROR" } },
  { name: "unknown frame type", frames: () => [{ type: "rm -rf" }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "binary frame", frames: () => [Buffer.from([1, 2, 3])], expect: { error: "PROTOCOL_ERROR" } },
  { name: "client frame sent by the room", frames: (sub) => [{ type: "subscribe", id: sub, source: { list: "messages" } }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "poke with a negative cursor", frames: (sub, n) => [{ type: "poke", pokeId: `p${n}`, subs: [sub], ops: [evil(sub, n)], cursor: { seq: -1, epoch: "e" } }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "poke op with an object key", frames: (sub, n) => [{ type: "poke", pokeId: `p${n}`, subs: [sub], ops: [{ op: "put", sub, key: { $gt: "" }, row: {} }], cursor: cursor(n) }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "poke op of unknown kind", frames: (sub, n) => [{ type: "poke", pokeId: `p${n}`, subs: [sub], ops: [{ op: "truncate", sub, key: "x" }], cursor: cursor(n) }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "frame over 1 MiB", frames: (sub, n) => [{ type: "poke", pokeId: `p${n}`, subs: [sub], ops: [put(sub, { id: `big-${n}`, text: "x".repeat(1_100_000) })], cursor: cursor(n) }], expect: { error: "MESSAGE_TOO_LARGE" } },
  { name: "pokePart without pokeStart", frames: (sub, n) => [{ type: "pokePart", pokeId: `orphan-${n}`, ops: [evil(sub, n)] }], expect: { error: "PROTOCOL_ERROR" } },
  { name: "pokeEnd without pokeStart", frames: (_sub, n) => [{ type: "pokeEnd", pokeId: `orphan-${n}`, cursor: cursor(n) }], expect: { error: "PROTOCOL_ERROR" } },
  {
    name: "interleaved pokes",
    frames: (sub, n) => [
      { type: "pokeStart", pokeId: `a${n}`, subs: [sub] },
      { type: "pokePart", pokeId: `a${n}`, ops: [evil(sub, n)] },
      { type: "pokeStart", pokeId: `b${n}`, subs: [sub] },
      { type: "pokeEnd", pokeId: `b${n}`, cursor: cursor(1000 + n) },
      { type: "pokeEnd", pokeId: `a${n}`, cursor: cursor(1000 + n) },
    ],
    expect: { resubscribe: true },
  },
  {
    name: "part naming another poke",
    frames: (sub, n) => [
      { type: "pokeStart", pokeId: `c${n}`, subs: [sub] },
      { type: "pokePart", pokeId: `other-${n}`, ops: [evil(sub, n)] },
      { type: "pokeEnd", pokeId: `c${n}`, cursor: cursor(1000 + n) },
    ],
    expect: { resubscribe: true },
  },
  {
    name: "op for a subscription the poke did not list",
    frames: (sub, n) => [{ type: "poke", pokeId: `d${n}`, subs: [sub], ops: [evil(sub, n), evil("someone-else", n)], cursor: cursor(1000 + n) }],
    expect: { resubscribe: true },
  },
  {
    name: "garbage in the middle of a poke",
    frames: (sub, n) => [{ type: "pokeStart", pokeId: `e${n}`, subs: [sub] }, "{oops", { type: "pokeEnd", pokeId: `e${n}`, cursor: cursor(1000 + n) }],
    expect: { resubscribe: true },
  },
  {
    name: "a put whose row has no key",
    frames: (sub, n) => [{ type: "poke", pokeId: `f${n}`, subs: [sub], ops: [{ op: "put", sub, key: `nokey-${n}`, row: { text: "no id" } }], cursor: cursor(1000 + n) }],
    expect: { resubscribe: true },
  },
  { name: "error for an unknown subscription", frames: () => [{ type: "error", sub: "nobody", error: { code: "FORBIDDEN", message: "x" } }], expect: { ignored: true } },
  { name: "outcomes for writes never made", frames: (_sub, n) => [{ type: "poke", pokeId: `g${n}`, subs: [], ops: [], cursor: cursor(1), mutations: [{ clientSeq: 99, status: "applied" }] }], expect: { ignored: true } },
  { name: "poke for subscriptions that do not exist", frames: (_sub, n) => [{ type: "poke", pokeId: `h${n}`, subs: ["ghost"], ops: [evil("ghost", n)], cursor: cursor(1) }], expect: { ignored: true } },
];

test(`room → client bad-input corpus (${CASES.length} cases): coded errors or resets, never a partial poke`, async () => {
  const h = await startHarness();
  const { collection, errors } = messagesCollection(h.client);
  const ready = collection.preload();
  let socket = await h.room.socket();
  socket.hello();
  let sub = (await socket.subscribeFrame()).id!;
  socket.poke({ pokeId: "init", subs: [sub], resets: [sub], parts: [[put(sub, { id: "m1", text: "hello" })]], cursor: cursor(1) });
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
      expect({ case: testCase.name, cursor: again.cursor }).toEqual({ case: testCase.name, cursor: undefined });
      sub = again.id!;
      // The room answers the resubscribe with a reset; the client accepts it.
      socket.poke({ pokeId: `reset-${n}`, subs: [sub], resets: [sub], parts: [[put(sub, { id: "m1", text: "hello" })]], cursor: cursor(2000 + n) });
    }
    // Whatever happened, a valid poke still applies and nothing of the broken one did.
    socket.poke({ pokeId: `ok-${n}`, subs: [sub], parts: [[put(sub, { id: `ok-${n}`, text: "fine" })]], cursor: cursor(3000 + n) });
    await eventually(() => expect(collection.has(`ok-${n}`)).toBe(true));
    expect({ case: testCase.name, evil: rowsOf(collection).filter((row) => String(row.id).startsWith("evil") || String(row.id).startsWith("nokey")) }).toEqual({
      case: testCase.name,
      evil: [],
    });
    expect(h.client.status).toBe("connected");
    socket = await h.room.socket(h.room.sockets.length - 1);
  }
  expect(errors.filter((error) => error.code !== "INTERNAL")).toEqual([]);
  console.log(`[corpus] room → client: ${CASES.length} cases`);
});
