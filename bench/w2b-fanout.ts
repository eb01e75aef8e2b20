/**
 * W2b — fan-out at room scale. 1,000 sockets subscribed to one shape of a
 * room, held by 4 child processes (250 each: one event loop reading 1,000
 * frames would be the bottleneck, and the measuring process must not read
 * them at all). One write (an HTTP request whose handler upserts one row
 * with `sql.exec`; the room flushes after the handler); the time from
 * sending that request until the LAST of the 1,000 sockets has the poke.
 * Repeated for 30 writes (quick: 12), one at a time with a pause between
 * them, after 3 warm-up writes; median and p90.
 *
 * "Has the poke" = the socket received a frame whose text contains the
 * written row's id (unique per write), so the workload does not depend on
 * the poke's block format.
 *
 * Baseline, same run, same children, interleaved write by write (the order
 * alternates): `RawFanout`, a Durable Object without any sync engine that
 * holds 1,000 hibernatable sockets and, on an HTTP request, sends the body —
 * a string the size of the room's poke frame, built by the bench — to every
 * one of them. What it measures is the runtime's floor for one broadcast.
 *
 * Clocks: each child stamps arrival with `process.hrtime` (CLOCK_MONOTONIC,
 * one clock for all processes on Linux), the parent stamps the request with
 * the same clock; the parent checks at startup that a child's reading falls
 * between its own before and after (arrivals.ts).
 */
import type { BenchContext, Metric } from "./lib/context.js";
import { ArrivalChildren, type Arrival } from "./lib/arrivals.js";
import { monotonicMs } from "./lib/arrival-protocol.js";
import { roomCall } from "./lib/room.js";
import type { NotMeasured } from "./lib/report.js";
import { percentile, sleep } from "./lib/stats.js";

const SOCKETS = 1_000;
const CHILDREN = 4;
const WARMUP = 3;
const LIST = "W2B";
const SOURCE = { shape: "itemsByList", args: { listId: LIST } };
/** Between one write's last arrival and the next write: lets sockets, GC and the room settle. */
const PAUSE_MS = 100;

export async function runFanout(ctx: BenchContext): Promise<Metric[] | NotMeasured> {
  const writes = ctx.quick ? 12 : 30;
  const room = ctx.freshRoom("w2b");
  const rawRoom = ctx.freshRoom("w2braw");
  const wsBase = `ws://${ctx.worker.host}`;
  const children = await ArrivalChildren.start(CHILDREN);
  try {
    const openedAt = Date.now();
    await children.open({ group: "lunora", kind: "lunora", url: `${wsBase}/parties/room/${encodeURIComponent(room)}`, total: SOCKETS, tokenPrefix: "fan", subscribe: { type: "subscribe", id: "s", source: SOURCE } });
    await children.open({ group: "raw", kind: "raw", url: `${wsBase}/raw/${encodeURIComponent(rawRoom)}/socket`, total: SOCKETS, tokenPrefix: "raw" });
    const rawCount = await (await ctx.worker.fetch(`/raw/${encodeURIComponent(rawRoom)}/count`)).json() as { sockets: number };
    if (rawCount.sockets !== SOCKETS) throw new Error(`W2b: the raw object holds ${rawCount.sockets} sockets, expected ${SOCKETS}`);
    ctx.note("W2b", `${SOCKETS} lunora + ${SOCKETS} raw sockets opened in ${((Date.now() - openedAt) / 1000).toFixed(1)} s by ${CHILDREN} child processes`);

    let written = 0;
    let frameBytes = 0;
    /** One write to the room; resolves with the arrival when every socket has the row. */
    const ours = async (): Promise<Arrival & { sentAt: number }> => {
      const id = `w2b-${written++}`;
      const arrival = await children.watch("lunora", `"${id}"`);
      const sentAt = monotonicMs();
      await roomCall(ctx.worker, room, "/items/put", { id, listId: LIST, title: `fan-out write ${written}`, rank: written });
      const result = await arrival.arrived;
      frameBytes = result.frameBytes;
      return { ...result, sentAt };
    };
    /** One broadcast of a frame the size of ours from the raw object. */
    const raw = async (): Promise<Arrival & { sentAt: number }> => {
      const marker = `raw-${written++}`;
      const head = `{"type":"raw","marker":"${marker}","pad":"`;
      const tail = `"}`;
      const frame = head + ".".repeat(Math.max(0, frameBytes - head.length - tail.length)) + tail;
      const arrival = await children.watch("raw", `"${marker}"`);
      const sentAt = monotonicMs();
      const response = await ctx.worker.fetch(`/raw/${encodeURIComponent(rawRoom)}/broadcast`, { method: "POST", body: frame });
      if (!response.ok) throw new Error(`W2b raw broadcast: ${response.status}`);
      await response.arrayBuffer();
      return { ...(await arrival.arrived), sentAt };
    };

    // Warm-up: ours first (it fixes the frame size the raw object sends).
    for (let i = 0; i < WARMUP; i++) {
      await ours();
      await sleep(PAUSE_MS);
      await raw();
      await sleep(PAUSE_MS);
    }
    const oursMs: number[] = [];
    const oursFirstMs: number[] = [];
    const rawMs: number[] = [];
    const rawFirstMs: number[] = [];
    const spread = (last: number[], first: number[]) => last.map((t, i) => t - first[i]);
    for (let i = 0; i < writes; i++) {
      // Alternate which goes first, so drift and the previous write's garbage hit both alike.
      for (const which of i % 2 === 0 ? (["ours", "raw"] as const) : (["raw", "ours"] as const)) {
        const a = which === "ours" ? await ours() : await raw();
        (which === "ours" ? oursMs : rawMs).push(a.last - a.sentAt);
        (which === "ours" ? oursFirstMs : rawFirstMs).push(a.first - a.sentAt);
        await sleep(PAUSE_MS);
      }
    }
    const summary = (last: number[], first: number[]) =>
      `last socket p50 ${percentile(last, 50).toFixed(1)}, p90 ${percentile(last, 90).toFixed(1)}, max ${Math.max(...last).toFixed(1)} ms; ` +
      `first socket p50 ${percentile(first, 50).toFixed(1)} ms; first → last p50 ${percentile(spread(last, first), 50).toFixed(1)} ms`;
    ctx.note("W2b", `${writes} writes, poke frame ${frameBytes} B. ours: ${summary(oursMs, oursFirstMs)}`);
    ctx.note("W2b", `raw broadcast of ${frameBytes} B: ${summary(rawMs, rawFirstMs)}`);
    return [
      { name: "fanout_1000_ms", value: round2(percentile(oursMs, 50)) },
      { name: "fanout_1000_p90_ms", value: round2(percentile(oursMs, 90)) },
      { name: "fanout_raw_1000_ms", value: round2(percentile(rawMs, 50)) },
      { name: "fanout_raw_1000_p90_ms", value: round2(percentile(rawMs, 90)) },
      { name: "fanout_first_ms", value: round2(percentile(oursFirstMs, 50)) },
      { name: "fanout_raw_first_ms", value: round2(percentile(rawFirstMs, 50)) },
      // First → last socket of one write: the per-socket part alone (the fixed cost of a write is in `…_first_ms`).
      { name: "fanout_spread_ms", value: round2(percentile(spread(oursMs, oursFirstMs), 50)) },
      { name: "fanout_raw_spread_ms", value: round2(percentile(spread(rawMs, rawFirstMs), 50)) },
      { name: "fanout_frame_bytes", value: frameBytes },
    ];
  } finally {
    await children.close();
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;
