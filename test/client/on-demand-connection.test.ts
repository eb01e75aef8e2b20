import { createCollection, createLiveQueryCollection, eq, type Collection } from "@tanstack/db";
import { describe, expect, it } from "vitest";
import { createInMemoryQueryCache } from "../../src/cache/index.js";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import { subsetCacheKey, viewCacheKey } from "../../src/cache/view-key.js";
import { subsetKey } from "../../src/collections/subset-where.js";
import { eventually } from "./helpers/eventually.js";
import { onCleanup, startHarness } from "./helpers/harness.js";
import { bindingOf } from "./helpers/scripted-room.js";
import { TOP_TWO_RESOLVED, del, ids, onDemandTopTwo, patch, put, serveTopTwo } from "./helpers/on-demand.js";

// The client half of on-demand sync over a real socket: the room here is
// scripted (the test plays the frames a room sends), so these tests pin the
// client's side of the protocol — what it subscribes with, how it reads
// `subsets`, how it resumes — independently of the server.

async function onDemandHarness() {
  const h = await startHarness();
  return { h, ...onDemandTopTwo(h.client) };
}

/** {@link onDemandHarness} with the top-two query loaded: its window and tie subsets served (serveTopTwo). */
async function servedOnDemand() {
  const harness = await onDemandHarness();
  const loaded = harness.top.preload();
  const socket = await harness.h.room.socket(0);
  socket.hello();
  const served = await serveTopTwo(socket);
  await loaded;
  return { ...harness, socket, ...served };
}

/** Every change event of `collection` as `type:key`, in order. */
function recordChanges(collection: Collection<any, any, any>) {
  const seen: string[] = [];
  const subscription = collection.subscribeChanges((events) => {
    for (const change of events) seen.push(`${change.type}:${String(change.key)}`);
  });
  return { seen, subscription };
}

describe("on-demand subsets on the wire (scripted room)", () => {
  it("subscribes with the compiled subset, resumes with the resolved predicate and cursor after a drop", async () => {
    const { h, top } = await onDemandHarness();
    const loaded = top.preload();
    const socket = await h.room.socket(0);
    socket.hello();
    const { window: first, tie } = await serveTopTwo(socket);
    expect(first.subset).toEqual({ where: { grp: { eq: "x" } }, limit: { count: 2, column: "a", desc: true } });
    expect(first.cursor).toBeUndefined();
    // TanStack then loads the tie at the boundary (a = 8) as a subset of its own.
    expect(tie.subset).toEqual({ where: { $and: [{ grp: { eq: "x" } }, { a: { eq: 8 } }] } });
    await loaded;
    expect(ids(top)).toEqual(["r8", "r9"]);

    socket.terminate();
    const again = await h.room.socket(1);
    again.hello();
    const resumed = await again.subscribeFrame(0);
    expect(resumed.id).toBe(first.id);
    expect(resumed.subset).toEqual({ where: TOP_TWO_RESOLVED });
    expect(resumed.cursor).toEqual({ seq: 10, epoch: "e1" });
  });

  it("one poke for two subsets of the collection is one sync transaction: a row moving between them stays", async () => {
    const { h, props, top, transactions, socket, window, tie } = await servedOnDemand();

    const { seen, subscription: changes } = recordChanges(props);
    const before = transactions();
    // r8 leaves the window subset and stays in the tie subset; r9 changes: one poke.
    socket.pokeFrame({
      pokeId: "p3",
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

describe("on-demand subsets: patches (protocol 4)", () => {
  it("a patch arriving via one subset updates the row every subset shares, as one update", async () => {
    const { h, props, top, socket, window, tie } = await servedOnDemand();
    const { seen, subscription: changes } = recordChanges(props);
    // r8 is held by both subsets; the tie's group carries the patch.
    socket.pokeFrame({ pokeId: "p3", ops: [patch(tie.id!, "r8", { a: 8.5 })], cursor: { seq: 11, epoch: "e1" } });
    await eventually(() => expect(props.get("r8")).toMatchObject({ id: "r8", grp: "x", a: 8.5 }));
    changes.unsubscribe();
    // One change for r8 (TanStack calls it an insert for a listener that was not shown r8 before), never a delete.
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^(insert|update):r8$/);
    // Still held by both: the window's delete of it leaves it in the collection, with the patched value.
    socket.pokeFrame({ pokeId: "p4", ops: [del(window.id!, "r8")], cursor: { seq: 12, epoch: "e1" } });
    await eventually(() => expect(h.clientErrors).toEqual([]));
    socket.pokeFrame({ pokeId: "p5", ops: [patch(window.id!, "r9", { a: 9.5 })], cursor: { seq: 13, epoch: "e1" } });
    await eventually(() => expect(props.get("r9")).toMatchObject({ a: 9.5 }));
    expect(props.get("r8")).toMatchObject({ id: "r8", grp: "x", a: 8.5 });
  });

  it("a patch via a subset that does not hold the row is a protocol violation: nothing of the poke applies, the subsets start over", async () => {
    const { h, props, top, socket, window } = await servedOnDemand();
    // r7 is held by no subset (and by the collection not at all).
    socket.pokeFrame({ pokeId: "p3", ops: [put(window.id!, "r10", { grp: "x", a: 10 }), patch(window.id!, "r7", { a: 7.5 })], cursor: { seq: 11, epoch: "e1" } });
    await eventually(() => expect(h.clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]));
    expect(h.clientErrors[0].error.message).toContain("r7");
    expect(props.has("r10")).toBe(false);
    // Both subsets subscribe again, without cursor.
    await eventually(() => expect(socket.subscribes.length).toBeGreaterThanOrEqual(4));
    expect(socket.subscribes.slice(2).every((frame) => frame.cursor === undefined)).toBe(true);
  });

  it("a failed poke subscribes each of its subsets again exactly once (not by the collection and the connection both)", async () => {
    const { props, socket, window, tie } = await servedOnDemand();
    // Fails the group: a patch via the window for a row it does not hold (the poke covers both subsets).
    socket.pokeFrame({ pokeId: "p3", ops: [patch(window.id!, "r7", { a: 7.5 })], cursor: { seq: 11, epoch: "e1" } });
    await eventually(() => expect(socket.subscribes.length).toBeGreaterThanOrEqual(4));
    // A marker: a query of its own subscribes after every resubscribe the failure caused has been sent.
    const other = createLiveQueryCollection((q: any) => q.from({ p: props }).where(({ p }: any) => eq(p.grp, "marker"))) as unknown as Collection<
      Record<string, unknown>,
      string
    >;
    const reader = other.subscribeChanges(() => undefined);
    onCleanup(async () => {
      reader.unsubscribe();
      await other.cleanup();
    });
    await eventually(() => expect(socket.subscribes.some((frame) => JSON.stringify(frame.subset ?? {}).includes("marker"))).toBe(true));
    const marker = socket.subscribes.findIndex((frame) => JSON.stringify(frame.subset ?? {}).includes("marker"));
    // (TanStack reloads its windows after the reset's truncate under new subscriptions: not counted here.)
    const again = socket.subscribes.slice(2, marker).filter((frame) => frame.id === window.id || frame.id === tie.id);
    expect(again.map((frame) => frame.id).sort()).toEqual([window.id, tie.id].sort());
    expect(again.every((frame) => frame.cursor === undefined)).toBe(true);
  });
});

describe("on-demand subsets: rows restored from the query cache (protocol 4)", () => {
  it("a subset restored from the cache does not overwrite the fresher row another live subset holds", async () => {
    const queryCache = createInMemoryQueryCache();
    const h = await startHarness({ queryCache });
    const options = lunoraCollectionOptions({ client: h.client, list: "props", syncMode: "on-demand" } as never) as { config: any };
    const props = createCollection(options.config as never) as unknown as Collection<Record<string, unknown>, string>;
    const liveWhere = (column: string, value: string) =>
      createLiveQueryCollection((q: any) => q.from({ p: props }).where(({ p }: any) => eq(p[column], value))) as unknown as Collection<
        Record<string, unknown>,
        string
      >;
    const columns = ["id", "grp", "c"];
    const inX = liveWhere("grp", "x");
    const readX = inX.subscribeChanges(() => undefined);
    onCleanup(async () => {
      readX.unsubscribe();
      await inX.cleanup();
      await props.cleanup();
    });
    const socket = await h.room.socket(0);
    socket.hello();
    const a = (await socket.subscribeFrame(0)).id!;
    socket.pokeFrame({ pokeId: "p1", subs: [a], columns, resets: [a], ops: [put(a, "r8", { grp: "x", c: "old" })], cursor: { seq: 5, epoch: "e1" } });
    await eventually(() => expect(props.get("r8")).toMatchObject({ c: "old" }));

    // A second subset (c = "old") holds r8 too, at seq 5, and is cached there.
    const old = liveWhere("c", "old");
    const readOld = old.subscribeChanges(() => undefined);
    const b = (await socket.subscribeFrame(1)).id!;
    const before = h.received();
    socket.pokeFrame({ pokeId: "p2", subs: [b], columns, resets: [b], ops: [put(b, "r8", { grp: "x", c: "old" })], cursor: { seq: 5, epoch: "e1" } });
    await h.processed(before, 1);
    await queryCache.flush();
    expect((await queryCache.read(subsetCacheKey(viewCacheKey("chat", "default", { list: "props" }), subsetKey({ where: { c: { eq: "old" } } }))))?.rows).toEqual([
      ["r8", { id: "r8", grp: "x", c: "old" }],
    ]);
    readOld.unsubscribe();
    await old.cleanup();
    await eventually(() => expect(socket.frames.some((frame) => frame.type === "unsubscribe" && frame.id === b)).toBe(true));

    // r8 changes: it leaves c = "old", the live subset gets the patch.
    socket.pokeFrame({ pokeId: "p3", ops: [patch(a, "r8", { c: "new" })], cursor: { seq: 10, epoch: "e1" } });
    await eventually(() => expect(props.get("r8")).toMatchObject({ c: "new" }));

    // c = "old" again: restored from its cache entry (r8 as of seq 5), then
    // resumed from seq 5, where the room says r8 left it.
    const again = liveWhere("c", "old");
    const readAgain = again.subscribeChanges(() => undefined);
    onCleanup(async () => {
      readAgain.unsubscribe();
      await again.cleanup();
    });
    const resumed = await socket.subscribeFrame(2);
    expect(resumed.cursor).toEqual({ seq: 5, epoch: "e1" });
    // Restored, and r8 is still the live subset's image.
    expect(props.get("r8")).toMatchObject({ c: "new" });
    socket.pokeFrame({ pokeId: "p4", bind: [bindingOf(resumed.id!, columns)], ops: [del(resumed.id!, "r8")], cursor: { seq: 10, epoch: "e1" } });
    // The subset that holds r8 is at seq 10 with c = "new": so is the collection.
    await eventually(() => expect(again.size).toBe(0));
    expect(h.clientErrors).toEqual([]);
    expect(props.get("r8")).toMatchObject({ id: "r8", grp: "x", c: "new" });
  });
});
