/**
 * Invariant 11, attacked with random data: every live query over an
 * on-demand collection (`syncMode: "on-demand"`, its `where`, `orderBy` and
 * `limit` pushed down to the room as subsets) returns exactly what the same
 * query returns over an eagerly synced collection of the same shape — after
 * the first load and after every batch of random writes.
 *
 * Real parts only: the fixture room in workerd, one LunoraClient over a real
 * loopback socket, TanStack DB live queries. The eager collection is the
 * oracle (the whole shape, evaluated by TanStack itself), so the test checks
 * the push-down — the predicate compiler, the fallbacks, the room's subset
 * resolution and its live membership — not a model of TanStack.
 *
 * A failure prints the seed and the history of queries and writes;
 * `LUNORA_PROPERTY_DEBUG=1` also prints every subscribe frame, the resolved
 * subsets the room reported and the collections' sizes at each check.
 */
import {
  and,
  createCollection,
  createLiveQueryCollection,
  eq,
  gt,
  gte,
  inArray,
  isNull,
  like,
  lt,
  lte,
  not,
  or,
  type Collection,
} from "@tanstack/db";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { WebSocket } from "ws";
import { recordingWebSocket } from "../helpers/recording-websocket.js";
import { LunoraClient, lunoraCollectionOptions } from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putProps, startFixtureRoom, type PropInput } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

type Prop = Required<PropInput>;

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

/** xorshift32: small, seedable, good enough to pick test cases. */
function rng(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)];
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof rng>;

const A_VALUES = [null, -3, -1, 0, 1, 2, 3, 5, 6] as const;
const B_VALUES = [null, -1.5, 0, 0.001, 0.25, 2.5, 7, 1e-300] as const;
// Text values whose code-unit order (TanStack "lexical") equals SQLite's code-point order.
const C_VALUES = [null, "a", "ab", "b", "B", "A", "z", "é", "a b", ""] as const;
const HIDDEN_VALUES = [null, "x", "secret"] as const;

function randomProp(r: Rng, id: string): Prop {
  return {
    id,
    grp: r.chance(0.8) ? "g1" : "g2",
    a: r.pick(A_VALUES),
    b: r.pick(B_VALUES),
    c: r.pick(C_VALUES),
    hidden: r.chance(0.15) ? "secret" : r.pick(HIDDEN_VALUES),
  };
}

type Row = Record<string, any>;
type Expr = (p: Row) => any;

/** A random predicate of the pushed-down operators, with now and then one that must fall back (`like`). */
function randomWhere(r: Rng, depth = 0): { text: string; build: Expr } {
  const leaf = (): { text: string; build: Expr } => {
    const kind = r.int(0, 9);
    if (kind <= 1) {
      const v = r.pick(A_VALUES.filter((x) => x !== null));
      const op = r.pick(["eq", "gt", "gte", "lt", "lte"] as const);
      const fn = { eq, gt, gte, lt, lte }[op];
      return { text: `${op}(a, ${v})`, build: (p) => fn(p.a, v) };
    }
    if (kind === 2) {
      const v = r.pick(B_VALUES.filter((x) => x !== null));
      const op = r.pick(["gt", "gte", "lt", "lte"] as const);
      const fn = { gt, gte, lt, lte }[op];
      return { text: `${op}(b, ${v})`, build: (p) => fn(p.b, v) };
    }
    if (kind === 3) {
      const v = r.pick(C_VALUES.filter((x) => x !== null));
      const op = r.pick(["eq", "gt", "lt"] as const);
      const fn = { eq, gt, lt }[op];
      return { text: `${op}(c, ${JSON.stringify(v)})`, build: (p) => fn(p.c, v) };
    }
    if (kind === 4) {
      const list = [r.pick(A_VALUES.filter((x) => x !== null)), r.pick(A_VALUES.filter((x) => x !== null))];
      return { text: `inArray(a, ${JSON.stringify(list)})`, build: (p) => inArray(p.a, list) };
    }
    if (kind === 5) {
      const list = [r.pick(C_VALUES.filter((x) => x !== null)), r.pick(C_VALUES.filter((x) => x !== null))];
      return { text: `inArray(c, ${JSON.stringify(list)})`, build: (p) => inArray(p.c, list) };
    }
    if (kind === 6) {
      const column = r.pick(["a", "b", "c"] as const);
      return { text: `isNull(${column})`, build: (p) => isNull(p[column]) };
    }
    if (kind === 7) {
      // Not in the room's predicate language: the subset must widen, never narrow.
      return { text: `like(c, "a%")`, build: (p) => like(p.c, "a%") };
    }
    const inner = leaf();
    return { text: `not(${inner.text})`, build: (p) => not(inner.build(p)) };
  };
  if (depth >= 2 || r.chance(0.45)) return leaf();
  const left = randomWhere(r, depth + 1);
  const right = randomWhere(r, depth + 1);
  const combinator = r.pick(["and", "or"] as const);
  return combinator === "and"
    ? { text: `and(${left.text}, ${right.text})`, build: (p) => and(left.build(p), right.build(p)) }
    : { text: `or(${left.text}, ${right.text})`, build: (p) => or(left.build(p), right.build(p)) };
}

interface QuerySpec {
  text: string;
  where: Expr | undefined;
  orderBy: Array<{ column: "a" | "b" | "c"; direction: "asc" | "desc"; nulls: "first" | "last"; stringSort: "lexical" | "locale" }>;
  limit: number | undefined;
}

function randomQuery(r: Rng): QuerySpec {
  const where = r.chance(0.9) ? randomWhere(r) : undefined;
  const orderBy: QuerySpec["orderBy"] = [];
  const columns = ["a", "b", "c"] as const;
  const count = r.int(0, 2);
  for (let i = 0; i < count; i++) {
    orderBy.push({ column: r.pick(columns), direction: r.pick(["asc", "desc"] as const), nulls: r.pick(["first", "last"] as const), stringSort: r.chance(0.8) ? "lexical" : "locale" });
  }
  const limit = orderBy.length > 0 && r.chance(0.75) ? r.int(1, 15) : undefined;
  const text = [
    where ? `where ${where.text}` : "no where",
    orderBy.map((o) => `orderBy ${o.column} ${o.direction} nulls ${o.nulls} ${o.stringSort}`).join(", "),
    limit !== undefined ? `limit ${limit}` : "",
  ]
    .filter(Boolean)
    .join(" · ");
  return { text, where: where?.build, orderBy, limit };
}

/** A live query with a reader attached, as a mounted component has (TanStack collects live queries nobody reads). */
function liveQuery(collection: Collection<any, any, any>, spec: QuerySpec) {
  const live = createLiveQueryCollection({
    query: (q) => {
      let query: any = q.from({ p: collection });
      if (spec.where) query = query.where(({ p }: { p: Row }) => spec.where!(p));
      for (const clause of spec.orderBy) {
        query = query.orderBy(({ p }: { p: Row }) => p[clause.column], { direction: clause.direction, nulls: clause.nulls, stringSort: clause.stringSort });
      }
      // The id last: ties in the other columns then order the same way in both collections.
      if (spec.orderBy.length > 0) query = query.orderBy(({ p }: { p: Row }) => p.id, { direction: "asc", stringSort: "lexical" });
      if (spec.limit !== undefined) query = query.limit(spec.limit);
      return query;
    },
    startSync: true,
  });
  const reader = live.subscribeChanges(() => undefined);
  const cleanup = live.cleanup.bind(live);
  live.cleanup = async () => {
    reader.unsubscribe();
    await cleanup();
  };
  return live;
}

/** A result as comparable data: rows without TanStack's virtual properties, in result order. */
function resultOf(live: Collection<any, any, any>, ordered: boolean): Row[] {
  const rows = live.toArray.map((row: Row) => Object.fromEntries(Object.entries(row).filter(([key]) => !key.startsWith("$"))));
  return ordered ? rows : rows.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

async function runSeed(seed: number): Promise<void> {
  const r = rng(seed);
  const room = `odp-${seed}-${Date.now().toString(36)}`;
  const model = new Map<string, Prop>();
  let nextId = 0;
  let marker = 0;
  const write = async (put: Prop[], del: string[]) => {
    for (const row of put) model.set(row.id, row);
    for (const id of del) model.delete(id);
    // The marker (another group, the same transaction) says when the whole write has been applied.
    marker++;
    await putProps(worker, room, [...put, { id: `marker`, grp: "marker", a: marker, b: null, c: null, hidden: null }], del);
  };
  await write(Array.from({ length: 120 }, () => randomProp(r, `p${nextId++}`)), []);

  const recording = recordingWebSocket();
  const client = new LunoraClient({ host: worker.host, party: "room", auth: "user:prop", WebSocket: process.env.LUNORA_PROPERTY_DEBUG ? recording.WebSocket : WebSocket, reconnect: { minDelayMs: 20, maxDelayMs: 200 }, pingIntervalMs: 0 });
  const shape = { name: "propsByGroup", args: { grp: "g1" } } as const;
  const eager = createCollection(lunoraCollectionOptions({ client, shape, shardKey: room, load: "eager", getKey: (row: Row) => row.id as string, id: `eager-${seed}` }).config);
  const onDemand = createCollection(
    lunoraCollectionOptions({ client, shape, shardKey: room, load: "eager", syncMode: "on-demand", getKey: (row: Row) => row.id as string, id: `ondemand-${seed}` }).config,
  );
  const markers = createCollection(
    lunoraCollectionOptions({ client, shape: { name: "propsByGroup", args: { grp: "marker" } }, shardKey: room, load: "eager", getKey: (row: Row) => row.id as string, id: `marker-${seed}` }).config,
  );
  /**
   * Each query runs three times: over the eager collection (the oracle),
   * over the shared on-demand collection (whose subsets overlap: sharing,
   * refcounts, unloads) and over an on-demand collection of its own (no other
   * query's rows can hide a missing one).
   */
  const queries: Array<{ spec: QuerySpec; eager: Collection<any, any, any>; onDemand: Collection<any, any, any>; own: Collection<any, any, any>; ownSource: Collection<any, any, any> }> = [];
  let owned = 0;
  const history: string[] = [];
  try {
    if (process.env.LUNORA_PROPERTY_DEBUG) console.log("preloading");
    await markers.preload();
    await eager.preload();

    const addQuery = async () => {
      const spec = randomQuery(r);
      history.push(`query ${queries.length}: ${spec.text}`);
      if (process.env.LUNORA_PROPERTY_DEBUG) console.log(history.at(-1));
      const ownSource = createCollection(
        lunoraCollectionOptions({ client, shape, shardKey: room, load: "eager", syncMode: "on-demand", getKey: (row: Row) => row.id as string, id: `own-${seed}-${owned++}` }).config,
      );
      const entry = { spec, eager: liveQuery(eager, spec), onDemand: liveQuery(onDemand, spec), own: liveQuery(ownSource, spec), ownSource };
      queries.push(entry);
      await entry.eager.toArrayWhenReady();
      await entry.onDemand.toArrayWhenReady();
      await entry.own.toArrayWhenReady();
    };

    /** A quiescent point: the write is applied everywhere and every on-demand query has finished loading. */
    const checkAll = async (when: string) => {
      await waitFor(() => markers.get("marker")?.a === marker, { message: `${when}: marker ${marker} applied` });
      if (process.env.LUNORA_PROPERTY_DEBUG) {
        for (const frame of recording.log.sent.splice(0)) if (frame.includes("subscribe")) console.log("SENT", frame);
        for (const frame of recording.log.frames.splice(0)) if (frame.includes("subsets") || frame.includes("error")) console.log("RECV", frame.slice(0, 300));
      }
      if (process.env.LUNORA_PROPERTY_DEBUG) console.log(when, "shared on-demand holds", onDemand.size, "eager", eager.size, "own:", queries.map((q) => `${q.ownSource.size}(${q.ownSource.status}) ${q.own.size}/${q.eager.size}`).join(" | "));
      for (const [index, query] of queries.entries()) {
        const ordered = query.spec.orderBy.length > 0;
        for (const [label, collection] of [["shared", query.onDemand], ["own", query.own]] as const) {
          await waitFor(
            () => {
              expect(resultOf(collection, ordered), `seed ${seed}, ${when}, query ${index} (${label} on-demand collection): ${query.spec.text}\n${history.join("\n")}`).toEqual(
                resultOf(query.eager, ordered),
              );
              return true;
            },
            { timeoutMs: 10_000, message: `seed ${seed}: query ${index} (${label}) converges` },
          );
        }
      }
      // No wrong rows: whatever the on-demand collection holds is the shape's current row.
      for (const [key, row] of onDemand.state) {
        const truth = eager.get(key);
        expect(truth, `seed ${seed}, ${when}: on-demand holds ${String(key)}, which left the shape`).toBeDefined();
        expect(resultOf({ toArray: [row] } as never, true)[0]).toEqual(resultOf({ toArray: [truth] } as never, true)[0]);
      }
    };

    for (let i = 0; i < 6; i++) await addQuery();
    await checkAll("after the first load");

    for (let round = 0; round < 5; round++) {
      const put: Prop[] = [];
      const del: string[] = [];
      const ids = [...model.keys()];
      for (let op = r.int(1, 8); op > 0; op--) {
        const kind = r.int(0, 9);
        if (kind <= 3 || ids.length === 0) put.push(randomProp(r, `p${nextId++}`));
        else if (kind <= 7) {
          const id = r.pick(ids);
          const next = randomProp(r, id);
          // Change one or two fields, so rows move within and across subsets.
          const current = model.get(id)!;
          const changed = { ...current };
          for (const field of [r.pick(["a", "b", "c", "grp", "hidden"] as const), r.pick(["a", "b", "c"] as const)]) (changed as any)[field] = next[field];
          put.push(changed);
        } else del.push(r.pick(ids));
      }
      history.push(`round ${round}: put ${put.map((p) => JSON.stringify(p)).join(" ")} del ${del.join(",")}`);
      await write(put, del);
      if (r.chance(0.3) && queries.length > 1) {
        // An unloaded subset must not take rows another query still shows.
        const [gone] = queries.splice(r.int(0, queries.length - 1), 1);
        history.push(`dropped query: ${gone.spec.text}`);
        await gone.onDemand.cleanup();
        await gone.own.cleanup();
        await gone.ownSource.cleanup();
        await gone.eager.cleanup();
      }
      if (r.chance(0.5)) await addQuery();
      await checkAll(`after round ${round}`);
    }
  } finally {
    for (const query of queries) {
      await query.onDemand.cleanup();
      await query.own.cleanup();
      await query.ownSource.cleanup();
      await query.eager.cleanup();
    }
    await onDemand.cleanup();
    await eager.cleanup();
    await markers.cleanup();
    client.close();
  }
}

/**
 * Fixed seeds keep CI reproducible. `LUNORA_PROPERTY_SEED=<n>` replays one;
 * `LUNORA_PROPERTY_SEEDS=<count>` searches that many fresh random seeds.
 */
const SEEDS = process.env.LUNORA_PROPERTY_SEED
  ? [Number(process.env.LUNORA_PROPERTY_SEED)]
  : process.env.LUNORA_PROPERTY_SEEDS
    ? Array.from({ length: Number(process.env.LUNORA_PROPERTY_SEEDS) }, () => Math.floor(Math.random() * 2 ** 31))
    : [11, 2024, 77_001];

describe("on-demand live queries equal the same queries over the eager shape (invariant 11)", () => {
  for (const seed of SEEDS) {
    test(`seed ${seed}`, { timeout: 120_000 }, async () => {
      await runSeed(seed);
    });
  }
});
