/**
 * W3 — replaying an offline queue. A client queues writes while its socket
 * cannot connect (a loopback proxy refuses connections), then the network
 * comes back with 20 ms of added one-way latency (40 ms round trip). Timed
 * from the room's socket being connected (hello received) until the last
 * write is settled (its `isPersisted` resolved: the room applied it and the
 * poke carrying its watermark was applied).
 *
 * - pipelined: the outbox sends every pending write of the room in one push;
 * - serial: the same stack with `pipeline: false` (one write per round trip).
 *
 * The time from the proxy coming back online (reconnect backoff included) is
 * noted too.
 */
import type { BenchContext, Metric } from "./lib/context.js";
import { TcpProxy } from "../test/helpers/tcp-proxy.js";
import { median, sleep, until } from "./lib/stats.js";
import { startWriter } from "./lib/writer.js";

const ONE_WAY_MS = 20;

interface Replay {
  fromConnectedMs: number;
  fromOnlineMs: number;
}

async function replay(ctx: BenchContext, writes: number, pipeline: boolean): Promise<Replay> {
  const room = ctx.freshRoom(pipeline ? "w3p" : "w3s");
  const proxy = await TcpProxy.start(ctx.worker.port, { delayMs: ONE_WAY_MS });
  proxy.setOnline(false);
  const writer = startWriter({
    host: proxy.host,
    room,
    listId: "W3",
    token: "user:w3",
    pipeline,
    // Retry often while offline, so the reconnect itself is not what is measured.
    reconnect: { minDelayMs: 25, maxDelayMs: 50 },
  });
  let connectedAt: number | undefined;
  writer.client.onRoomStatusChange((name, status) => {
    if (name === room && status === "connected") connectedAt ??= performance.now();
  });
  try {
    await writer.db.executor.waitForInit();
    const persisted: Promise<unknown>[] = [];
    for (let i = 0; i < writes; i++) persisted.push(writer.insert(`offline ${i}`).transaction.isPersisted.promise);
    await until(() => writer.db.executor.pendingCount === writes, "W3: writes queued", 30_000, 5);
    await sleep(100); // let the outbox persist its queue
    const onlineAt = performance.now();
    proxy.setOnline(true);
    await Promise.all(persisted);
    const done = performance.now();
    if (connectedAt === undefined) throw new Error("W3: never saw the room connected");
    const rows = writer.db.collections.items.size;
    if (rows !== writes) throw new Error(`W3: ${rows} rows after replay, expected ${writes}`);
    return { fromConnectedMs: done - connectedAt, fromOnlineMs: done - onlineAt };
  } finally {
    await writer.close();
    await proxy.stop();
  }
}

export async function runReplay(ctx: BenchContext): Promise<Metric[]> {
  const writes = ctx.quick ? 200 : 1_000;
  const reps = ctx.quick ? 1 : 3;
  await replay(ctx, 50, true); // warm-up
  await replay(ctx, 20, false);
  const pipelined: Replay[] = [];
  const serial: Replay[] = [];
  for (let i = 0; i < reps; i++) {
    pipelined.push(await replay(ctx, writes, true));
    serial.push(await replay(ctx, writes, false));
  }
  const fmt = (runs: Replay[]) => runs.map((r) => `${r.fromConnectedMs.toFixed(0)} (${r.fromOnlineMs.toFixed(0)} from online)`).join(", ");
  ctx.note(
    "W3",
    `${writes} queued writes${ctx.quick ? " (quick mode: fewer writes)" : ""}, ${ONE_WAY_MS} ms one way; ms from connected: pipelined ${fmt(pipelined)}; serial ${fmt(serial)}`,
  );
  return [
    { name: "replay_pipelined_ms", value: Math.round(median(pipelined.map((r) => r.fromConnectedMs))) },
    { name: "replay_serial_ms", value: Math.round(median(serial.map((r) => r.fromConnectedMs))) },
    { name: "replay_writes", value: writes },
  ];
}
