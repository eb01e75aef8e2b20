/**
 * W1 — apply throughput. 10,000 preloaded rows, 100 batches of 100 row
 * changes, one indexed `where listId = … orderBy rank limit 50` live query.
 *
 * - ours: the frames the real room sent for those batches (recorded once from
 *   workerd over a real socket) are played into a `LunoraClient` +
 *   `lunoraCollectionOptions` collection: frame validation, poke assembly,
 *   `begin/write/commit`, live query maintenance.
 * - bare TanStack: the same rows written straight through a sync
 *   `begin/write/commit` (what any adapter must at least pay), the initial
 *   rows too arriving after the live query subscribed, as ours do.
 * - Replicache: the same rows as `poke()` patches on an in-memory store, one
 *   subscription doing the same query the Replicache way (index scan on
 *   listId, sort by rank, first 50).
 *
 * Each is timed from the first batch until the live query shows the final
 * top 50.
 */
import { BasicIndex, createCollection, createLiveQueryCollection, eq, type Collection } from "@tanstack/db";
import { Replicache, TEST_LICENSE_KEY, type ReadonlyJSONObject } from "replicache";
import WebSocket from "ws";
import { LunoraClient, lunoraCollectionOptions } from "../src/index.js";
import type { BenchContext, Metric } from "./lib/context.js";
import { ReplayWebSocket } from "./lib/replay-websocket.js";
import { putItems, type BenchItem } from "./lib/room.js";
import { median, prng, settleHeap, until } from "./lib/stats.js";
import { PROTOCOL_VERSION } from "../src/protocol/index.js";

const ROWS = 10_000;
const LISTS = 10;
const BATCHES = 100;
const BATCH_SIZE = 100;
const QUERIED_LIST = "L0";
const LIMIT = 50;

export interface Recording {
  hello: string;
  snapshot: string[];
  batches: string[];
  /** Final state, to know what the live query must show at the end. */
  expectedTop: string[];
  /** The rows of each batch, parsed from the frames (for the peers). */
  batchRows: BenchItem[][];
  initialRows: BenchItem[];
}

function dataset(): { initial: BenchItem[]; batches: BenchItem[][] } {
  const random = prng(0x5eed);
  const rank = () => Math.floor(random() * 1_000_000_000);
  const initial: BenchItem[] = [];
  for (let i = 0; i < ROWS; i++) initial.push({ id: `r${String(i).padStart(5, "0")}`, listId: `L${i % LISTS}`, title: `item ${i}`, rank: rank() });
  const batches: BenchItem[][] = [];
  for (let b = 0; b < BATCHES; b++) {
    const picked = new Set<number>();
    while (picked.size < BATCH_SIZE) picked.add(Math.floor(random() * ROWS));
    batches.push([...picked].map((i) => ({ ...initial[i], title: `item ${i} v${b}`, rank: rank() })));
  }
  return { initial, batches };
}

function topOf(rows: Iterable<BenchItem>): string[] {
  return [...rows]
    .filter((row) => row.listId === QUERIED_LIST)
    .sort((a, b) => a.rank - b.rank)
    .slice(0, LIMIT)
    .map((row) => row.id);
}

/** Loads the data set into a fresh room and records every frame it sends a `list` subscriber. */
export async function recordW1(ctx: BenchContext): Promise<Recording> {
  const { initial, batches } = dataset();
  const room = ctx.freshRoom("w1");
  await putItems(ctx.worker, room, initial);
  const frames: string[] = [];
  const ws = new WebSocket(`ws://${ctx.worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=user:recorder`);
  ws.on("message", (data) => {
    const text = data.toString();
    if (text !== "pong") frames.push(text);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const pokesEnded = () => frames.filter((frame) => frame.startsWith('{"type":"pokeEnd"') || frame.startsWith('{"type":"poke",')).length;
  ws.send(JSON.stringify({ type: "subscribe", id: "s0", source: { list: "items" } }));
  await until(() => pokesEnded() === 1, "the W1 snapshot");
  const snapshotEnd = frames.length;
  for (let b = 0; b < BATCHES; b++) {
    await putItems(ctx.worker, room, batches[b]);
    await until(() => pokesEnded() === b + 2, `W1 batch ${b}`);
  }
  ws.close();
  const hello = frames.find((frame) => frame.startsWith('{"type":"hello"'))!;
  const snapshot = frames.slice(0, snapshotEnd).filter((frame) => frame !== hello);
  const batchFrames = frames.slice(snapshotEnd);
  // Protocol 4: ops are blocks [group, kind, ...items]; count the items.
  const opsIn = (frame: string): number => ((JSON.parse(frame).ops ?? []) as unknown[][]).reduce((sum, block) => sum + block.length - 2, 0);
  const changes = batchFrames.reduce((sum, frame) => sum + opsIn(frame), 0);
  if (batchFrames.length !== BATCHES || changes !== BATCHES * BATCH_SIZE) {
    throw new Error(`W1: expected ${BATCHES} one-frame pokes of ${BATCH_SIZE} ops, got ${batchFrames.length} frames with ${changes} ops`);
  }
  // The bare-TanStack baseline writes each batch's whole rows (the room may
  // have sent some of them as column patches, which our client merges).
  const batchRows = batches;
  const final = new Map(initial.map((row) => [row.id, row]));
  for (const batch of batches) for (const row of batch) final.set(row.id, row);
  return { hello, snapshot, batches: batchFrames, expectedTop: topOf(final.values()), batchRows, initialRows: initial };
}

function liveTop(collection: Collection<any, any, any>) {
  return createLiveQueryCollection({
    query: (q) =>
      q
        .from({ item: collection })
        .where(({ item }) => eq((item as any).listId, QUERIED_LIST))
        .orderBy(({ item }) => (item as any).rank, "asc")
        .limit(LIMIT),
    startSync: true,
  });
}

function indexed<C extends Collection<any, any, any>>(collection: C): C {
  collection.createIndex((row: any) => row.listId, { indexType: BasicIndex });
  collection.createIndex((row: any) => row.rank, { indexType: BasicIndex });
  return collection;
}

const sameIds = (live: Collection<any, any, any>, expected: string[]) => {
  const ids = live.toArray.map((row: any) => row.id as string);
  return ids.length === expected.length && ids.every((id, i) => id === expected[i]);
};

let runs = 0;

/** Wall-clock ms of a timed section, and the CPU ms this process spent in it (all its threads). */
export interface RunTime {
  ms: number;
  cpuMs: number;
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/** Brackets the timed section (for bench/profile.ts). */
export interface TimedHooks {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}
const noHooks: TimedHooks = { start() {}, stop() {} };

/** Ours: recorded frames into LunoraClient + our collection. Returns ms. */
export async function runOurs(rec: Recording, hooks: TimedHooks = noHooks): Promise<RunTime> {
  const run = runs++;
  ReplayWebSocket.onOpenFrames = [rec.hello];
  ReplayWebSocket.onSend = (socket, data) => {
    if (data.startsWith('{"type":"subscribe"')) setTimeout(() => rec.snapshot.forEach((frame) => socket.deliver(frame)), 0);
  };
  const client = new LunoraClient({ host: "127.0.0.1:9", party: "room", auth: "user:bench", WebSocket: ReplayWebSocket, pingIntervalMs: 0 });
  const options = lunoraCollectionOptions({ client, list: "items", shardKey: "w1", load: "eager" });
  const collection = indexed(createCollection({ ...options.config, id: `w1-ours-${run}` }));
  const live = liveTop(collection);
  await collection.toArrayWhenReady();
  await live.toArrayWhenReady();
  if (collection.size !== ROWS) throw new Error(`W1 ours: snapshot has ${collection.size} rows`);
  const socket = ReplayWebSocket.last!;
  settleHeap();
  await hooks.start();
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (const frame of rec.batches) socket.deliver(frame);
  await until(() => sameIds(live, rec.expectedTop), "W1 ours: final top 50", 60_000, 0);
  const elapsed = performance.now() - started;
  const cpuMs = cpuMsSince(cpu);
  await hooks.stop();
  await live.cleanup();
  await collection.cleanup();
  client.close();
  return { ms: elapsed, cpuMs };
}

/**
 * Bare TanStack: the same rows through a sync begin/write/commit. Returns ms.
 * `parse`: each batch arrives as JSON text of its whole rows and is parsed in
 * the timed section — the least any adapter fed from a network pays (the
 * default variant is handed rows already built, before the clock starts).
 */
export async function runBare(rec: Recording, hooks: TimedHooks = noHooks, parse = false): Promise<RunTime> {
  const run = runs++;
  const texts = rec.batchRows.map((batch) => JSON.stringify(batch));
  const batches: BenchItem[][] = parse ? [] : texts.map((text) => JSON.parse(text));
  const initial: BenchItem[] = JSON.parse(JSON.stringify(rec.initialRows));
  let sync!: { begin: () => void; write: (message: any) => void; commit: () => void };
  const collection = indexed(
    createCollection<BenchItem, string>({
      id: `w1-bare-${run}`,
      getKey: (row) => row.id,
      startSync: true,
      sync: {
        rowUpdateMode: "full",
        sync: (params) => {
          sync = params;
        },
      },
    }),
  );
  const live = liveTop(collection);
  // The initial rows arrive after the live query subscribed, as they do for
  // ours (and for any asynchronous source): TanStack DB's live query keeps a
  // different internal state when the rows were there before it existed, and
  // the comparison is about the adapter, not about that.
  setImmediate(() => {
    sync.begin();
    for (const row of initial) sync.write({ type: "insert", value: row });
    sync.commit();
    (sync as unknown as { markReady: () => void }).markReady();
  });
  await collection.toArrayWhenReady();
  await live.toArrayWhenReady();
  settleHeap();
  await hooks.start();
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (let b = 0; b < texts.length; b++) {
    const batch = parse ? (JSON.parse(texts[b]) as BenchItem[]) : batches[b];
    sync.begin();
    for (const row of batch) sync.write({ type: "update", value: row });
    sync.commit();
  }
  await until(() => sameIds(live, rec.expectedTop), "W1 bare: final top 50", 60_000, 0);
  const elapsed = performance.now() - started;
  const cpuMs = cpuMsSince(cpu);
  await hooks.stop();
  await live.cleanup();
  await collection.cleanup();
  return { ms: elapsed, cpuMs };
}

/** Replicache: the same rows as poke() patches, one subscription. Returns ms. */
async function runReplicache(rec: Recording): Promise<RunTime> {
  const run = runs++;
  const ok = { httpRequestInfo: { httpStatusCode: 200, errorMessage: "" } };
  const rep = new Replicache({
    name: `w1-replicache-${run}-${Date.now()}`,
    licenseKey: TEST_LICENSE_KEY,
    kvStore: "mem",
    pullInterval: null,
    puller: async () => ok,
    pusher: async () => ok,
    indexes: { byList: { prefix: "item/", jsonPointer: "/listId" } },
    logLevel: "error",
  });
  let latest: string[] = [];
  const stop = rep.subscribe(
    async (tx) => {
      const rows = (await tx.scan({ indexName: "byList", prefix: QUERIED_LIST }).values().toArray()) as unknown as BenchItem[];
      return rows
        .filter((row) => row.listId === QUERIED_LIST)
        .sort((a, b) => a.rank - b.rank)
        .slice(0, LIMIT)
        .map((row) => row.id);
    },
    (ids) => {
      latest = ids;
    },
  );
  const patch = (rows: BenchItem[]) => rows.map((row) => ({ op: "put" as const, key: `item/${row.id}`, value: { ...row } as ReadonlyJSONObject }));
  const initial = patch(JSON.parse(JSON.stringify(rec.initialRows)));
  const batches = (JSON.parse(JSON.stringify(rec.batchRows)) as BenchItem[][]).map(patch);
  await rep.poke({ baseCookie: null, pullResponse: { cookie: 0, lastMutationIDChanges: {}, patch: initial } });
  const initialTop = topOf(rec.initialRows);
  await until(() => latest.length === LIMIT && latest.every((id, i) => id === initialTop[i]), "W1 replicache: initial top 50");
  settleHeap();
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (let b = 0; b < batches.length; b++) {
    await rep.poke({ baseCookie: b, pullResponse: { cookie: b + 1, lastMutationIDChanges: {}, patch: batches[b] } });
  }
  await until(() => latest.length === LIMIT && latest.every((id, i) => id === rec.expectedTop[i]), "W1 replicache: final top 50", 60_000, 0);
  const elapsed = performance.now() - started;
  const cpuMs = cpuMsSince(cpu);
  stop();
  await rep.close();
  return { ms: elapsed, cpuMs };
}

export async function runApply(ctx: BenchContext): Promise<Metric[]> {
  const rec = await recordW1(ctx);
  const reps = ctx.quick ? 3 : 9;
  const changes = BATCHES * BATCH_SIZE;
  const times = { ours: [] as RunTime[], bare: [] as RunTime[], bareParsed: [] as RunTime[], replicache: [] as RunTime[] };
  const runners = { ours: runOurs, bare: runBare, bareParsed: (r: Recording) => runBare(r, noHooks, true), replicache: runReplicache };
  const order = Object.keys(runners) as Array<keyof typeof runners>;
  // Warm-up rounds (JIT, module loading), then measured rounds. Each round
  // runs all four, in an order rotated every round, so drift in machine load
  // and order effects hit all four alike.
  const warmup = ctx.quick ? 1 : 2;
  for (let i = 0; i < warmup + reps; i++) {
    for (let j = 0; j < order.length; j++) {
      const which = order[(i + j) % order.length];
      const time = await runners[which](rec);
      if (i >= warmup) times[which].push(time);
    }
  }
  const rate = (runs: RunTime[], key: keyof RunTime = "ms") => Math.round(changes / (median(runs.map((run) => run[key])) / 1000));
  // Rounds are paired: the ratio within each round is what machine noise disturbs least.
  const paired = median(times.ours.map((run, i) => times.bare[i].ms / run.ms));
  const pairedParsed = median(times.ours.map((run, i) => times.bareParsed[i].ms / run.ms));
  ctx.note("W1", `${changes} changes in ${BATCHES} pokes; wall ms per run: ours ${fmt(times.ours, "ms")}; bare ${fmt(times.bare, "ms")}; bare parsing ${fmt(times.bareParsed, "ms")}; replicache ${fmt(times.replicache, "ms")}`);
  ctx.note("W1", `CPU ms per run: ours ${fmt(times.ours, "cpuMs")}; bare ${fmt(times.bare, "cpuMs")}; bare parsing ${fmt(times.bareParsed, "cpuMs")}; replicache ${fmt(times.replicache, "cpuMs")}`);
  ctx.note("W1", `ours/bare: ${(rate(times.ours) / rate(times.bare)).toFixed(2)} from wall-time medians, ${paired.toFixed(2)} median of per-round ratios, ${(rate(times.ours, "cpuMs") / rate(times.bare, "cpuMs")).toFixed(2)} from CPU-time medians`);
  ctx.note("W1", `ours/bare parsing its rows: ${(rate(times.ours) / rate(times.bareParsed)).toFixed(2)} from wall-time medians, ${pairedParsed.toFixed(2)} median of per-round ratios`);
  return [
    { name: "apply_rows_per_s", value: rate(times.ours) },
    { name: "apply_bare_tanstack_rows_per_s", value: rate(times.bare) },
    { name: "apply_bare_tanstack_parsed_rows_per_s", value: rate(times.bareParsed) },
    { name: "apply_replicache_rows_per_s", value: rate(times.replicache) },
    { name: "apply_cpu_rows_per_s", value: rate(times.ours, "cpuMs") },
    { name: "apply_bare_tanstack_cpu_rows_per_s", value: rate(times.bare, "cpuMs") },
    { name: "apply_replicache_cpu_rows_per_s", value: rate(times.replicache, "cpuMs") },
  ];
}

const fmt = (runs: RunTime[], key: keyof RunTime) => runs.map((run) => run[key].toFixed(0)).join(", ");
