import { IR, createCollection, createLiveQueryCollection, eq, gt, type Collection } from "@tanstack/db";
import { afterEach, describe, expect, it } from "vitest";
import type { LunoraClient } from "../../src/client/lunora-client.js";
import type { PokeUpdate, SubscribeOptions, Subscription, SubscriptionHandler } from "../../src/client/subscription.js";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import { LunoraError, type OpBlock, type RowOp } from "../../src/protocol/index.js";
import { eventually } from "../client/helpers/eventually.js";

// The run's only collaborator is the client's subscribe(): a stand-in client
// records each subscription and the test drives its handler directly, as the
// room connection would (one applyPokes call per poke and collection).

interface FakeSub {
  id: string;
  room: string;
  options: SubscribeOptions;
  handler: SubscriptionHandler;
  active: boolean;
  resubscribed: number;
}

function fakeClient() {
  const subs: FakeSub[] = [];
  const identityListeners: Array<(identity: string) => void> = [];
  let next = 0;
  const client = {
    party: "p",
    queryCache: undefined,
    identityGeneration: 0,
    identity: async () => "anonymous",
    onIdentityChange: (listener: (identity: string) => void) => {
      identityListeners.push(listener);
      return () => undefined;
    },
    retainRoom: () => () => undefined,
    onMutationResults: () => () => undefined,
    onClose: () => () => undefined,
    subscribe: (options: SubscribeOptions): Subscription => {
      const sub: FakeSub = { id: `s${next++}`, room: options.room, options, handler: options.handler, active: true, resubscribed: 0 };
      subs.push(sub);
      return {
        id: sub.id,
        room: options.room,
        party: "p",
        unsubscribe: () => {
          sub.active = false;
        },
        resubscribe: () => {
          sub.resubscribed++;
        },
      };
    },
  };
  return {
    client: client as unknown as LunoraClient,
    subs,
    active: () => subs.filter((sub) => sub.active),
    switchIdentity: (identity: string) => identityListeners.forEach((listener) => listener(identity)),
  };
}

const cursor = (seq: number) => ({ seq, epoch: "e" });
const put = (key: string, row: Record<string, unknown>): RowOp => ({ op: "put", sub: "x", key, row: { id: key, ...row } });
const del = (key: string): RowOp => ({ op: "del", sub: "x", key });

/** The wire blocks of `ops` (one block per op: the form does not matter to the run). */
const blocksOf = (ops: RowOp[]): OpBlock[] => ops.map((op): OpBlock => (op.op === "del" ? ["g", "d", op.key] : ["g", op.op === "put" ? "p" : "u", op.row]));

/** One poke for several subscriptions of the collection, handed over as the connection does. */
function poke(entries: Array<[FakeSub, Partial<PokeUpdate> & { ops: RowOp[] }]>, seq: number): void {
  const group = entries[0]![0].handler.pokeGroup!;
  const deferral = group.deferPublication?.();
  try {
    group.applyPokes(
      entries.map(([sub, { ops, ...update }]) => ({
        handler: sub.handler,
        update: { reset: false, cursor: cursor(seq), ...update, ops, blocks: blocksOf(ops), keyColumn: "id" },
      })),
    );
  } finally {
    deferral?.publish();
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function onDemandProps(client: LunoraClient, extra: Record<string, unknown> = {}) {
  const options = lunoraCollectionOptions({ client, list: "props", syncMode: "on-demand", ...extra } as never);
  const collection = createCollection(options.config as never) as unknown as Collection<Record<string, unknown>, string>;
  cleanups.push(() => collection.cleanup());
  return { collection, scope: options.scope as (args?: Record<string, unknown>) => void };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- query builders over an untyped collection
type Build = (q: any) => any;

function live<T extends object = Record<string, unknown>>(build: Build) {
  const query = createLiveQueryCollection(build as never) as unknown as Collection<T, string | number>;
  // A reader keeps the query (and the subsets it loaded) alive, as a mounted component would.
  const reader = query.subscribeChanges(() => undefined);
  cleanups.push(() => query.cleanup());
  cleanups.push(() => reader.unsubscribe());
  return query;
}

const ids = (collection: { keys(): IterableIterator<string | number> }) => [...collection.keys()].map(String).sort();

describe("on-demand collection: subsets and their rows", () => {
  it("passes syncMode through and marks the collection ready without loading anything", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    expect(collection.config.syncMode).toBe("on-demand");
    await collection.preload();
    expect(collection.status).toBe("ready");
    expect(fake.subs).toHaveLength(0);
  });

  it("an unknown syncMode is refused with INVALID_ARGS; eager stays the default", () => {
    const fake = fakeClient();
    expect(() => lunoraCollectionOptions({ client: fake.client, list: "props", syncMode: "lazy" } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGS" }),
    );
    expect(lunoraCollectionOptions({ client: fake.client, list: "props" } as never).config.syncMode).toBe("eager");
  });

  it("a query loads its subset: the subscribe carries the compiled subset, the load resolves with the first poke", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const query = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x")).orderBy(({ p }: any) => p.a, "desc").limit(2));
    let settled = false;
    const loading = query.preload().then(() => (settled = true));
    await Promise.resolve();
    expect(fake.active()).toHaveLength(1);
    const [sub] = fake.active();
    expect(sub!.handler.subset!()).toEqual({ where: { grp: { eq: "x" } }, limit: { count: 2, column: "a", desc: true } });
    expect(settled).toBe(false);

    const resolved = { $and: [{ grp: { eq: "x" } }, { a: { gte: 8 } }] };
    poke([[sub!, { reset: true, resolved, ops: [put("r9", { grp: "x", a: 9 }), put("r8", { grp: "x", a: 8 })] }]], 5);
    // TanStack then loads the complete tie at the boundary value (a = 8), a subset of its own.
    const tie = await eventually(() => {
      expect(fake.active()).toHaveLength(2);
      return fake.active()[1]!;
    });
    expect(tie.handler.subset!()).toEqual({ where: { $and: [{ grp: { eq: "x" } }, { a: { eq: 8 } }] } });
    poke([[tie, { reset: true, ops: [put("r8", { grp: "x", a: 8 })] }]], 5);
    await loading;
    expect(ids(query)).toEqual(["r8", "r9"]);
    // From now on it resumes with the resolved predicate and no limit, from its cursor.
    expect(sub!.handler.subset!()).toEqual({ where: resolved });
    expect(sub!.handler.cursor()).toEqual(cursor(5));
  });

  it("identical loads share one subscription; the last unload stops it and drops its rows", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const build: Build = (q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x"));
    const first = live(build);
    const second = live(build);
    const loads = Promise.all([first.preload(), second.preload()]);
    await Promise.resolve();
    expect(fake.active()).toHaveLength(1);
    poke([[fake.active()[0]!, { reset: true, ops: [put("r1", { grp: "x" })] }]], 1);
    await loads;
    expect(ids(second)).toEqual(["r1"]);

    await first.cleanup();
    expect(fake.active()).toHaveLength(1);
    expect(collection.has("r1")).toBe(true);
    await second.cleanup();
    expect(fake.active()).toHaveLength(0);
    expect(collection.has("r1")).toBe(false);
  });

  it("a row stays while any loaded subset holds it: del or reset of one subset keeps rows the other holds", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const byGroup = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x")));
    const byA = live((q) => q.from({ p: collection }).where(({ p }: any) => gt(p.a, 5)));
    const loads = Promise.all([byGroup.preload(), byA.preload()]);
    await Promise.resolve();
    const [group, high] = fake.active();
    poke(
      [
        [group!, { reset: true, ops: [put("r1", { grp: "x", a: 1 }), put("r7", { grp: "x", a: 7 })] }],
        [high!, { reset: true, ops: [put("r7", { grp: "x", a: 7 }), put("r9", { grp: "y", a: 9 })] }],
      ],
      1,
    );
    await loads;
    expect(ids(collection)).toEqual(["r1", "r7", "r9"]);

    poke([[group!, { ops: [del("r7")] }]], 2); // r7 still in the a > 5 subset
    expect(ids(collection)).toEqual(["r1", "r7", "r9"]);

    poke([[high!, { reset: true, ops: [put("r9", { grp: "y", a: 9 })] }]], 3); // r7 left both
    expect(ids(collection)).toEqual(["r1", "r9"]);

    poke([[group!, { reset: true, ops: [] }]], 4); // r1 held by nobody now, r9 still held
    expect(ids(collection)).toEqual(["r9"]);
  });

  it("a row moving from one subset to another in one poke is never seen deleted", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const xs = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x")));
    const ys = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "y")));
    const loads = Promise.all([xs.preload(), ys.preload()]);
    await Promise.resolve();
    const [x, y] = fake.active();
    poke([[x!, { reset: true, ops: [put("r1", { grp: "x" })] }], [y!, { reset: true, ops: [] }]], 1);
    await loads;

    const seen: string[] = [];
    const changes = collection.subscribeChanges((events) => {
      for (const change of events) seen.push(`${change.type}:${String(change.key)}`);
    });
    // The room lists the subscriptions in any order: the del for x, the put for y.
    poke([[x!, { ops: [del("r1")] }], [y!, { ops: [put("r1", { grp: "y" })] }]], 2);
    changes.unsubscribe();
    // One change, never a delete (the reader had not seen r1: it arrives as an insert).
    expect(seen).toEqual([expect.stringMatching(/^(insert|update):r1$/)]);
    expect(collection.get("r1")).toMatchObject({ grp: "y" });
  });

  it("a failed subscription rejects the load with the coded error", async () => {
    const fake = fakeClient();
    const errors: string[] = [];
    const { collection } = onDemandProps(fake.client, { onError: (error: LunoraError) => errors.push(error.code) });
    const query = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.hidden, 1)));
    const loading = query.preload();
    await Promise.resolve();
    fake.active()[0]!.handler.onError(new LunoraError("INVALID_ARGS", 'column "hidden" is not projected'));
    // A later load of the same subset rejects with the same coded error.
    const again = { where: eq(new IR.PropRef(["hidden"]) as never, 1 as never) };
    await expect(collection._sync.loadSubset(again)).rejects.toMatchObject({ code: "INVALID_ARGS" });
    collection._sync.unloadSubset(again);
    expect(errors).toEqual(["INVALID_ARGS"]);
    await loading.catch(() => undefined);
    // Released like any other: the query going stops the failed subscription.
    await query.cleanup();
    expect(fake.active()).toHaveLength(0);
  });

  it("scope(args) re-subscribes every loaded subset at the new room and drops the old rows", async () => {
    const fake = fakeClient();
    const { collection, scope } = onDemandProps(fake.client, { list: undefined, shape: { name: "propsByGroup" }, scopeBy: "room" });
    scope({ room: "one" });
    const xs = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x")));
    const loading = xs.preload();
    await Promise.resolve();
    expect(fake.active().map((sub) => sub.room)).toEqual(["one"]);
    poke([[fake.active()[0]!, { reset: true, ops: [put("r1", { grp: "x" })] }]], 1);
    await loading;
    expect(ids(xs)).toEqual(["r1"]);

    scope({ room: "two" });
    expect(ids(collection)).toEqual([]);
    const moved = await eventually(() => {
      expect(fake.active().map((sub) => sub.room)).toEqual(["two"]);
      return fake.active()[0];
    });
    expect(moved!.handler.cursor()).toBeUndefined();
    expect(moved!.handler.subset!()).toEqual({ where: { grp: { eq: "x" } } });
    poke([[moved!, { reset: true, ops: [put("r2", { grp: "x" })] }]], 1);
    await eventually(() => expect(ids(xs)).toEqual(["r2"]));
  });

  it("an identity switch drops every row and cursor, and limited subsets ask for a new cut", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const top = live((q) => q.from({ p: collection }).orderBy(({ p }: any) => p.a).limit(1));
    const loading = top.preload();
    await Promise.resolve();
    const [sub] = fake.active();
    poke([[sub!, { reset: true, identity: "alice", resolved: { a: { lte: 1 } }, ops: [put("r1", { a: 1 })] }]], 3);
    const tie = await eventually(() => {
      expect(fake.active()).toHaveLength(2);
      return fake.active()[1]!;
    });
    poke([[tie, { reset: true, identity: "alice", ops: [put("r1", { a: 1 })] }]], 3);
    await loading;
    expect(ids(collection)).toEqual(["r1"]);

    fake.switchIdentity("bob");
    expect(ids(collection)).toEqual([]);
    expect(sub!.handler.cursor()).toBeUndefined();
    expect(sub!.handler.subset!()).toEqual({ limit: { count: 1, column: "a" } });
  });

  it("a scoped collection without a scope answers loads at once, and scope() then subscribes them", async () => {
    const fake = fakeClient();
    const { collection, scope } = onDemandProps(fake.client, { list: undefined, shape: { name: "propsByGroup" }, scopeBy: "room" });
    const xs = live((q) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x")));
    await xs.preload();
    expect(fake.subs).toHaveLength(0);
    scope({ room: "one" });
    const sub = await eventually(() => {
      expect(fake.active().map((s) => s.room)).toEqual(["one"]);
      return fake.active()[0]!;
    });
    expect(sub.handler.subset!()).toEqual({ where: { grp: { eq: "x" } } });
    poke([[sub, { reset: true, ops: [put("r1", { grp: "x" })] }]], 1);
    await eventually(() => expect(ids(xs)).toEqual(["r1"]));
  });

  it("a query that goes before its subset arrived stops the subscription; a late poke for it changes nothing", async () => {
    const fake = fakeClient();
    const { collection } = onDemandProps(fake.client);
    const xs = createLiveQueryCollection(((q: any) => q.from({ p: collection }).where(({ p }: any) => eq(p.grp, "x"))) as never) as unknown as Collection<
      Record<string, unknown>,
      string
    >;
    const loading = xs.preload().catch(() => undefined);
    await Promise.resolve();
    const [sub] = fake.active();
    await xs.cleanup();
    await loading;
    expect(fake.active()).toHaveLength(0);
    poke([[sub!, { reset: true, ops: [put("r1", { grp: "x" })] }]], 1);
    expect(ids(collection)).toEqual([]);
  });
});
