/**
 * W5 — boot from the query cache. A shape of 10,000 rows, one live query
 * (`where listId = … orderBy rank limit 50`, indexed). Timed from
 * constructing the client and the collection to the live query's first
 * result:
 *
 * - cache: a "reload" — new client, new collection, new cache object over
 *   the IndexedDB database (fake-indexeddb) a previous session filled;
 * - network: the same code over an empty database (a first visit), so the
 *   rows come in the snapshot over the socket.
 *
 * boot_ready_before_socket is 1 when, in every cache boot, the first result
 * was there before the socket's `open` event.
 *
 * boot_ondemand_cache_ms / boot_ondemand_network_ms: the same two boots
 * with `syncMode: "on-demand"`, where the query's window (50 rows) is what
 * the cache holds and what the room sends.
 */
import "fake-indexeddb/auto";
import { BasicIndex, createCollection, createLiveQueryCollection, eq } from "@tanstack/db";
import WebSocket from "ws";
import { createIndexedDbQueryCache, LunoraClient, lunoraCollectionOptions } from "../src/index.js";
import type { BenchContext, Metric } from "./lib/context.js";
import type { NotMeasured } from "./lib/report.js";
import { putItems, type BenchItem } from "./lib/room.js";
import { median, settleHeap, until } from "./lib/stats.js";

const ROWS = 10_000;
let databases = 0;
const freshDatabase = () => `lunora-bench-w5-${process.pid}-${databases++}`;

interface Boot {
  firstResultMs: number;
  /** ms from construction to the socket's `open` (undefined: not open yet when the result came). */
  socketOpenMs: number | undefined;
}

/** Brackets the timed section (for bench/profile.ts). */
export interface BootHooks {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

export async function boot(ctx: BenchContext, room: string, databaseName: string, hooks?: BootHooks, syncMode: "eager" | "on-demand" = "eager"): Promise<Boot> {
  let t0 = 0;
  let socketOpenAt: number | undefined;
  class TimedWebSocket extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("open", () => {
        socketOpenAt ??= performance.now();
      });
    }
  }
  await hooks?.start();
  const cache = createIndexedDbQueryCache({ databaseName });
  t0 = performance.now();
  const client = new LunoraClient({ host: ctx.worker.host, party: "room", auth: "user:w5", WebSocket: TimedWebSocket, pingIntervalMs: 0, queryCache: cache });
  const options = lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "W5" } }, shardKey: room, load: "eager", syncMode });
  const collection = createCollection(options.config);
  collection.createIndex((row: any) => row.listId, { indexType: BasicIndex });
  collection.createIndex((row: any) => row.rank, { indexType: BasicIndex });
  const live = createLiveQueryCollection({
    query: (q) =>
      q
        .from({ item: collection })
        .where(({ item }) => eq(item.listId, "W5"))
        .orderBy(({ item }) => item.rank, "asc")
        .limit(50),
    startSync: true,
  });
  await live.toArrayWhenReady();
  await until(() => live.size === 50, "W5: first live-query result", 60_000, 0);
  const t1 = performance.now();
  await hooks?.stop();
  const result: Boot = {
    firstResultMs: t1 - t0,
    socketOpenMs: socketOpenAt !== undefined && socketOpenAt <= t1 ? socketOpenAt - t0 : undefined,
  };
  // Let the session finish syncing and writing its cache before it ends, as a page would.
  if (syncMode === "eager") await until(() => options.utils.isAuthoritative() && collection.size === ROWS, "W5: synced", 60_000, 5);
  else await until(() => options.utils.isAuthoritative() && live.size === 50, "W5: window synced", 60_000, 5);
  await live.cleanup();
  await collection.cleanup();
  client.close();
  await cache.close();
  return result;
}

/**
 * The floor for any boot: the same 10,000 rows, already in memory, written
 * into a bare TanStack collection through one sync transaction, with the same
 * indexes and live query. No storage, no network, no adapter.
 *
 * `rowsFirst: false` (the metric) writes the rows after the live query has
 * subscribed, in the next task — the order every real boot has, because rows
 * come from storage or the network. `rowsFirst: true` writes them inside
 * `createCollection`, before the live query exists; then the query reads its
 * top 50 from the index instead of receiving 10,000 inserts (TanStack DB's
 * cheapest path, which no asynchronous source can take).
 */
export async function bareBoot(rows: BenchItem[], hooks?: BootHooks, rowsFirst = false): Promise<number> {
  const copy: BenchItem[] = JSON.parse(JSON.stringify(rows));
  await hooks?.start();
  const t0 = performance.now();
  let sync!: { begin: () => void; write: (message: any) => void; commit: () => void; markReady: () => void };
  const writeAll = () => {
    sync.begin();
    for (const row of copy) sync.write({ type: "insert", value: row });
    sync.commit();
    sync.markReady();
  };
  const collection = createCollection<BenchItem, string>({
    id: `w5-bare-${bareRuns++}`,
    getKey: (row) => row.id,
    startSync: true,
    sync: {
      rowUpdateMode: "full",
      sync: (params) => {
        sync = params;
        if (rowsFirst) writeAll();
      },
    },
  });
  collection.createIndex((row: any) => row.listId, { indexType: BasicIndex });
  collection.createIndex((row: any) => row.rank, { indexType: BasicIndex });
  const live = createLiveQueryCollection({
    query: (q) =>
      q
        .from({ item: collection })
        .where(({ item }) => eq((item as any).listId, "W5"))
        .orderBy(({ item }) => (item as any).rank, "asc")
        .limit(50),
    startSync: true,
  });
  if (!rowsFirst) setImmediate(writeAll);
  await live.toArrayWhenReady();
  await until(() => live.size === 50, "W5 bare: first live-query result", 60_000, 0);
  const elapsed = performance.now() - t0;
  await hooks?.stop();
  await live.cleanup();
  await collection.cleanup();
  return elapsed;
}
let bareRuns = 0;

const w5Rows = () => Array.from({ length: ROWS }, (_, i): BenchItem => ({ id: `r${i}`, listId: "W5", title: `item ${i}`, rank: i }));

/** A room with the 10,000 rows and a database a first session filled. */
export async function prepareBoot(ctx: BenchContext): Promise<{ room: string; primed: string; fresh: () => string }> {
  const room = ctx.freshRoom("w5");
  await putItems(ctx.worker, room, w5Rows());
  // Session 0 fills the cache.
  const primed = freshDatabase();
  await boot(ctx, room, primed);
  return { room, primed, fresh: freshDatabase };
}

export async function runBoot(ctx: BenchContext): Promise<Metric[] | NotMeasured> {
  const { room, primed } = await prepareBoot(ctx);
  // The same boot with `syncMode: "on-demand"`: the query's window, not the shape, comes from the cache or the room.
  const primedOnDemand = freshDatabase();
  await boot(ctx, room, primedOnDemand, undefined, "on-demand");
  const onDemandCache: Boot[] = [];
  const onDemandNetwork: Boot[] = [];

  const reps = ctx.quick ? 3 : 7;
  const cacheBoots: Boot[] = [];
  const networkBoots: Boot[] = [];
  const bareBoots: number[] = [];
  const bareRowsFirst: number[] = [];
  const rows = w5Rows();
  for (let i = 0; i < reps + 1; i++) {
    settleHeap();
    const fromCache = await boot(ctx, room, primed);
    settleHeap();
    const fromNetwork = await boot(ctx, room, freshDatabase());
    settleHeap();
    const bare = await bareBoot(rows);
    settleHeap();
    const bareFirst = await bareBoot(rows, undefined, true);
    settleHeap();
    const onDemandFromCache = await boot(ctx, room, primedOnDemand, undefined, "on-demand");
    settleHeap();
    const onDemandFromNetwork = await boot(ctx, room, freshDatabase(), undefined, "on-demand");
    if (i === 0) continue; // warm-up
    onDemandCache.push(onDemandFromCache);
    onDemandNetwork.push(onDemandFromNetwork);
    cacheBoots.push(fromCache);
    networkBoots.push(fromNetwork);
    bareBoots.push(bare);
    bareRowsFirst.push(bareFirst);
  }
  const beforeSocket = cacheBoots.every((b) => b.socketOpenMs === undefined);
  const fmt = (boots: Boot[]) => boots.map((b) => `${b.firstResultMs.toFixed(0)}${b.socketOpenMs === undefined ? "" : ` (socket open at ${b.socketOpenMs.toFixed(0)})`}`).join(", ");
  ctx.note(
    "W5",
    `first result ms — cache: ${fmt(cacheBoots)}; network: ${fmt(networkBoots)}; ` +
      `bare TanStack, rows from memory after the query subscribed (the floor): ${bareBoots.map((ms) => ms.toFixed(0)).join(", ")}; ` +
      `rows before the query existed: ${bareRowsFirst.map((ms) => ms.toFixed(0)).join(", ")}; ` +
      `on-demand — cache: ${fmt(onDemandCache)}; network: ${fmt(onDemandNetwork)}`,
  );
  return [
    { name: "boot_cache_ms", value: round1(median(cacheBoots.map((b) => b.firstResultMs))) },
    { name: "boot_network_ms", value: round1(median(networkBoots.map((b) => b.firstResultMs))) },
    { name: "boot_ready_before_socket", value: beforeSocket ? 1 : 0 },
    { name: "boot_bare_tanstack_ms", value: round1(median(bareBoots)) },
    { name: "boot_bare_tanstack_rows_first_ms", value: round1(median(bareRowsFirst)) },
    { name: "boot_ondemand_cache_ms", value: round1(median(onDemandCache.map((b) => b.firstResultMs))) },
    { name: "boot_ondemand_network_ms", value: round1(median(onDemandNetwork.map((b) => b.firstResultMs))) },
  ];
}

const round1 = (n: number) => Math.round(n * 10) / 10;
