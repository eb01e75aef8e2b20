import { createCollection, createLiveQueryCollection, eq, type Collection } from "@tanstack/db";
import { describe, expect, it } from "vitest";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import type { RowOp } from "../../src/protocol/index.js";
import { eventually } from "./helpers/eventually.js";
import { onCleanup, startHarness } from "./helpers/harness.js";

// The client half of on-demand sync over a real socket: the room here is
// scripted (the test plays the frames a room sends), so these tests pin the
// client's side of the protocol — what it subscribes with, how it reads
// `subsets`, how it resumes — independently of the server.

const put = (sub: string, key: string, row: Record<string, unknown>): RowOp => ({ op: "put", sub, key, row: { id: key, ...row } });
const del = (sub: string, key: string): RowOp => ({ op: "del", sub, key });

async function onDemandTopTwo() {
  const h = await startHarness();
  const options = lunoraCollectionOptions({ client: h.client, list: "props", syncMode: "on-demand" } as never) as { config: any };
  // Counts the collection's sync transactions (each begin() opens one).
  let transactions = 0;
  const sync = options.config.sync.sync;
  options.config.sync.sync = (params: any) =>
    sync({
      ...params,
      begin: () => {
        transactions++;
        params.begin();
      },
    });
  const props = createCollection(options.config as never) as unknown as Collection<Record<string, unknown>, string>;
  const top = createLiveQueryCollection((q: any) =>
    q.from({ p: props }).where(({ p }: any) => eq(p.grp, "x")).orderBy(({ p }: any) => p.a, "desc").limit(2),
  ) as unknown as Collection<Record<string, unknown>, string>;
  const reader = top.subscribeChanges(() => undefined);
  onCleanup(async () => {
    reader.unsubscribe();
    await top.cleanup();
    await props.cleanup();
  });
  return { h, props, top, transactions: () => transactions };
}

const ids = (collection: { keys(): IterableIterator<string | number> }) => [...collection.keys()].map(String).sort();

describe("on-demand subsets on the wire (scripted room)", () => {
  it("subscribes with the compiled subset, resumes with the resolved predicate and cursor after a drop", async () => {
    const { h, top } = await onDemandTopTwo();
    const loaded = top.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    const first = await socket.subscribeFrame(0);
    expect(first.subset).toEqual({ where: { grp: { eq: "x" } }, limit: { count: 2, column: "a", desc: true } });
    expect(first.cursor).toBeUndefined();

    const resolved = { $and: [{ grp: { eq: "x" } }, { a: { gte: 8 } }] };
    socket.send({
      type: "poke",
      pokeId: "p1",
      subs: [first.id],
      resets: [first.id],
      subsets: [{ sub: first.id, where: resolved }],
      ops: [put(first.id!, "r9", { grp: "x", a: 9 }), put(first.id!, "r8", { grp: "x", a: 8 })],
      cursor: { seq: 10, epoch: "e1" },
    });
    // TanStack then loads the tie at the boundary (a = 8) as a subset of its own.
    const tie = await socket.subscribeFrame(1);
    expect(tie.subset).toEqual({ where: { $and: [{ grp: { eq: "x" } }, { a: { eq: 8 } }] } });
    socket.send({ type: "poke", pokeId: "p2", subs: [tie.id], resets: [tie.id], ops: [put(tie.id!, "r8", { grp: "x", a: 8 })], cursor: { seq: 10, epoch: "e1" } });
    await loaded;
    expect(ids(top)).toEqual(["r8", "r9"]);

    socket.terminate();
    const again = await h.room.socket(1);
    again.hello();
    const resumed = await again.subscribeFrame(0);
    expect(resumed.id).toBe(first.id);
    expect(resumed.subset).toEqual({ where: resolved });
    expect(resumed.cursor).toEqual({ seq: 10, epoch: "e1" });
  });

  it("one poke for two subsets of the collection is one sync transaction: a row moving between them stays", async () => {
    const { h, props, top, transactions } = await onDemandTopTwo();
    const loaded = top.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    const window = await socket.subscribeFrame(0);
    socket.send({
      type: "poke",
      pokeId: "p1",
      subs: [window.id],
      resets: [window.id],
      subsets: [{ sub: window.id, where: { $and: [{ grp: { eq: "x" } }, { a: { gte: 8 } }] } }],
      ops: [put(window.id!, "r9", { grp: "x", a: 9 }), put(window.id!, "r8", { grp: "x", a: 8 })],
      cursor: { seq: 10, epoch: "e1" },
    });
    const tie = await socket.subscribeFrame(1);
    socket.send({ type: "poke", pokeId: "p2", subs: [tie.id], resets: [tie.id], ops: [put(tie.id!, "r8", { grp: "x", a: 8 })], cursor: { seq: 10, epoch: "e1" } });
    await loaded;

    const seen: string[] = [];
    const changes = props.subscribeChanges((events) => {
      for (const change of events) seen.push(`${change.type}:${String(change.key)}`);
    });
    const before = transactions();
    // r8 leaves the window subset and stays in the tie subset; r9 changes: one poke.
    socket.send({
      type: "poke",
      pokeId: "p3",
      subs: [window.id, tie.id],
      ops: [del(window.id!, "r8"), put(window.id!, "r9", { grp: "x", a: 10 }), put(tie.id!, "r8", { grp: "x", a: 8, c: "moved" })],
      cursor: { seq: 11, epoch: "e1" },
    });
    await eventually(() => expect(props.get("r9")).toMatchObject({ a: 10 }));
    changes.unsubscribe();
    expect(props.get("r8")).toMatchObject({ c: "moved" });
    expect(seen.some((event) => event.startsWith("delete"))).toBe(false);
    // The connection handed both subsets' updates over together: one sync transaction.
    expect(transactions() - before).toBe(1);
  });
});
