/**
 * W7 — shapes of any size.
 *
 * - big_rows, big_eager_first_result_ms, big_eager_bytes, big_eager_heap_mb:
 *   a 100,000-row shape synced eagerly through LunoraClient into a TanStack
 *   collection, and the W1 live query over it (`where listId`, `orderBy
 *   rank`, `limit 50`): time from subscribing to the query's first result,
 *   bytes received, JS heap growth.
 * - big_1m_snapshot_ms, big_1m_bytes, big_1m_room_rss_peak_mb,
 *   big_1m_room_rss_before_mb: a 1,000,000-row shape (~100 MB) to a raw
 *   protocol client that acknowledges as it reads: time to `pokeEnd`, and
 *   workerd's resident memory before and at its peak during the stream (the
 *   room must not grow with the shape).
 * - big_ondemand_first_result_ms, big_ondemand_bytes, big_ondemand_heap_mb:
 *   the same room and live query over a collection with
 *   `syncMode: "on-demand"`: the query's `where`, `orderBy` and `limit` are
 *   pushed down to the room, which sends the top 50 (plus ties) instead of
 *   the shape. Measured in the same run as the eager half; the goals are
 *   ratios between the two.
 */
import { createCollection, eq } from "@tanstack/db";
import { createLiveQueryCollection } from "@tanstack/db";
import { LunoraClient, lunoraCollectionOptions } from "../src/index.js";
import { recordingWebSocket } from "../test/helpers/recording-websocket.js";
import { RawSocket } from "../test/helpers/raw-socket.js";
import { workerdRssKiB } from "../test/helpers/workerd-rss.js";
import type { BenchContext, Metric } from "./lib/context.js";
import { roomCall } from "./lib/room.js";
import { until } from "./lib/stats.js";

const bytes = (frames: string[]) => frames.reduce((sum, frame) => sum + Buffer.byteLength(frame, "utf8"), 0);

/** Resident memory of the workerd processes this process started (MiB). */
const workerdRssMiB = () => workerdRssKiB() / 1024;

/** The W1 live query's first result over a `rows`-row shape, synced eagerly or on demand. */
async function firstTop50(ctx: BenchContext, room: string, rows: number, syncMode: "eager" | "on-demand"): Promise<Metric[]> {
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const recording = recordingWebSocket();
  const client = new LunoraClient({ host: ctx.worker.host, party: "room", auth: "user:w7", WebSocket: recording.WebSocket, pingIntervalMs: 0 });
  const started = performance.now();
  const items = createCollection(lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "W7" } }, shardKey: room, load: "eager", syncMode }).config);
  const top = createLiveQueryCollection((q) =>
    q
      .from({ item: items })
      .where(({ item }) => eq(item.listId, "W7"))
      .orderBy(({ item }) => item.rank, "desc")
      .limit(50),
  );
  await top.toArrayWhenReady();
  await until(() => top.size === 50, "W7: top 50", 300_000, 5);
  const firstResult = performance.now() - started;
  global.gc?.();
  const heapAfter = process.memoryUsage().heapUsed;
  const received = bytes(recording.log.frames);
  await top.cleanup();
  await items.cleanup();
  client.close();
  ctx.note("w7", `${syncMode} ${rows} rows: first top-50 result after ${Math.round(firstResult)} ms, ${(received / 1e6).toFixed(3)} MB received`);
  const prefix = syncMode === "eager" ? "big_eager" : "big_ondemand";
  return [
    { name: `${prefix}_first_result_ms`, value: firstResult },
    { name: `${prefix}_bytes`, value: received },
    { name: `${prefix}_heap_mb`, value: (heapAfter - heapBefore) / 2 ** 20 },
  ];
}

async function million(ctx: BenchContext, rows: number): Promise<Metric[]> {
  const room = ctx.freshRoom("w7m");
  await roomCall(ctx.worker, room, "/items/generate", { count: rows, prefix: "m", listId: "W7M", titleLength: 40 });
  const rssBefore = workerdRssMiB();
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, workerdRssMiB());
  }, 250);
  const socket = await RawSocket.connect(ctx.worker.host, room, { token: "user:w7" });
  // Count text, keep nothing: a raw client that acknowledges what it reads.
  let received = 0;
  socket.ws.removeAllListeners("message");
  let pending = 0;
  let done = false;
  socket.ws.on("message", (data) => {
    const text = data.toString();
    received += Buffer.byteLength(text, "utf8");
    pending += text.length;
    if (pending >= 256 * 1024) {
      socket.send({ type: "ack", received: pending });
      pending = 0;
    }
    if (text.startsWith('{"type":"pokeEnd"') || text.startsWith('{"type":"poke"')) done = true;
  });
  const started = performance.now();
  socket.subscribe("s", { shape: "itemsByList", args: { listId: "W7M" } });
  await until(() => done || socket.closed, "W7: 1M snapshot", 900_000, 20);
  const elapsed = performance.now() - started;
  clearInterval(sampler);
  const closed = socket.closed;
  await socket.close();
  if (closed) throw new Error(`W7: the 1M snapshot socket closed with ${closed.code}`);
  ctx.note("w7", `1M rows: snapshot in ${Math.round(elapsed)} ms, ${(received / 1e6).toFixed(0)} MB; workerd RSS ${Math.round(rssBefore)} → peak ${Math.round(rssPeak)} MiB`);
  return [
    { name: "big_1m_rows", value: rows },
    { name: "big_1m_snapshot_ms", value: elapsed },
    { name: "big_1m_bytes", value: received },
    { name: "big_1m_room_rss_before_mb", value: rssBefore },
    { name: "big_1m_room_rss_peak_mb", value: rssPeak },
  ];
}

export async function runBigShapes(ctx: BenchContext): Promise<Metric[]> {
  const rows = ctx.quick ? 20_000 : 100_000;
  const room = ctx.freshRoom("w7");
  await roomCall(ctx.worker, room, "/items/generate", { count: rows, prefix: "b", listId: "W7", titleLength: 40 });
  // On demand first: the eager half then cannot have warmed the room's pages for it.
  const metrics: Metric[] = [{ name: "big_rows", value: rows }];
  metrics.push(...(await firstTop50(ctx, room, rows, "on-demand")));
  metrics.push(...(await firstTop50(ctx, room, rows, "eager")));
  metrics.push(...(await million(ctx, ctx.quick ? 100_000 : 1_000_000)));
  return metrics;
}
