/**
 * W2 — remote visibility. 100 sockets are subscribed to one shape of a room:
 * client B (a `LunoraClient` with a collection) and 98 plain sockets (fan-out
 * load); client A's own collection is subscribed too. Client A writes 1,000 rows through an action at a steady 50 writes/s;
 * for each, the time from calling the action to the row being in B's
 * collection (its change listener fires). The other 98 sockets live in a
 * child process, so the frames they receive do not queue in front of B's in
 * the measuring event loop (they are other devices).
 *
 * Baseline, same room and load: the raw protocol — a plain socket pushes the
 * same mutation and a plain socket timestamps the poke frame carrying it. The
 * difference is what the client stack (outbox, collections, TanStack) adds.
 */
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import type { BenchContext, Metric } from "./lib/context.js";
import { openFanout } from "./lib/fanout.js";
import { steady } from "./lib/raw-subscribers.js";
import { startReader, startWriter } from "./lib/writer.js";
import type { NotMeasured } from "./lib/report.js";
import { percentile, sleep, until } from "./lib/stats.js";
import { PROTOCOL_VERSION } from "../src/protocol/index.js";
import { putKeys } from "./lib/op-bytes.js";

const SOCKETS = 100;
const RATE = 50;

const SOURCE = (listId: string) => ({ shape: "itemsByList", args: { listId } });

/** Raw protocol: push on one socket, poke observed on another. Returns latencies (ms). */
async function rawLatencies(ctx: BenchContext, writes: number): Promise<number[]> {
  const room = ctx.freshRoom("w2raw");
  // Observer and writer are two of the 100 subscribed sockets (as B and A are); the observer sits in the middle.
  const others = SOCKETS - 2;
  const fan1 = await openFanout(ctx.worker.host, room, Math.floor(others / 2), SOURCE("W2"));
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const observer = new WebSocket(`ws://${ctx.worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=user:observer`);
  observer.on("message", (data) => {
    const now = performance.now();
    const text = data.toString();
    if (!text.startsWith('{"type":"poke')) return;
    for (const key of putKeys(text)) {
      const sent = sentAt.get(key as string);
      if (sent !== undefined) latencies.push(now - sent);
    }
  });
  const writer = new WebSocket(`ws://${ctx.worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=user:writer`);
  await Promise.all([observer, writer].map((ws) => new Promise((resolve) => ws.once("open", resolve))));
  observer.send(JSON.stringify({ type: "subscribe", id: "s", source: SOURCE("W2") }));
  writer.send(JSON.stringify({ type: "subscribe", id: "s", source: SOURCE("W2") }));
  const fan2 = await openFanout(ctx.worker.host, room, others - Math.floor(others / 2), SOURCE("W2"));
  await sleep(200);
  const clientId = randomUUID();
  try {
    await steady(writes, RATE, (i) => {
      const id = randomUUID();
      sentAt.set(id, performance.now());
      writer.send(JSON.stringify({ type: "push", clientId, mutations: [{ clientSeq: i + 1, name: "items:create", args: { id, listId: "W2", title: `w${i}` } }] }));
    });
    await until(() => latencies.length === writes, "W2 raw: every write observed", 60_000, 5);
    return latencies;
  } finally {
    observer.close();
    writer.close();
    await fan1.close();
    await fan2.close();
  }
}

/** Ours: an action on client A, the row in client B's collection. Returns latencies (ms). */
async function ourLatencies(ctx: BenchContext, writes: number): Promise<number[]> {
  const room = ctx.freshRoom("w2");
  // A and B are two of the 100 subscribed sockets; B sits in the middle of the room's socket list.
  const others = SOCKETS - 2;
  const fan1 = await openFanout(ctx.worker.host, room, Math.floor(others / 2), SOURCE("W2"));
  const reader = await startReader(ctx.worker.host, room, "W2", "user:reader");
  const fan2 = await openFanout(ctx.worker.host, room, others - Math.floor(others / 2), SOURCE("W2"));
  const writer = startWriter({ host: ctx.worker.host, room, listId: "W2", token: "user:writer" });
  try {
    await writer.db.collections.items.toArrayWhenReady();
    await writer.db.executor.waitForInit();
    // Warm-up: a few writes through the whole path (JIT, outbox init).
    for (let i = 0; i < 20; i++) await writer.insert(`warm ${i}`).transaction.isPersisted.promise;
    await until(() => reader.collection.size === 20, "W2: warm-up rows at B", 30_000, 5);
    const startedAt = new Map<string, number>();
    const persisted: Promise<unknown>[] = [];
    await steady(writes, RATE, (i) => {
      const t0 = performance.now();
      const { id, transaction } = writer.insert(`w${i}`);
      startedAt.set(id, t0);
      persisted.push(transaction.isPersisted.promise);
    });
    await Promise.all(persisted);
    await until(() => [...startedAt.keys()].every((id) => reader.seenAt.has(id)), "W2: every write visible at B", 60_000, 5);
    return [...startedAt].map(([id, t0]) => reader.seenAt.get(id)! - t0);
  } finally {
    await writer.close();
    await reader.close();
    await fan1.close();
    await fan2.close();
  }
}

export async function runRemoteVisible(ctx: BenchContext): Promise<Metric[] | NotMeasured> {
  const writes = ctx.quick ? 250 : 1_000;
  const raw = await rawLatencies(ctx, writes);
  const ours = await ourLatencies(ctx, writes);
  const summary = (values: number[]) => `p50 ${percentile(values, 50).toFixed(1)}, p90 ${percentile(values, 90).toFixed(1)}, p99 ${percentile(values, 99).toFixed(1)}, max ${Math.max(...values).toFixed(1)} ms`;
  ctx.note("W2", `${writes} writes at ${RATE}/s, ${SOCKETS} subscribed sockets. raw protocol: ${summary(raw)}`);
  const metrics: Metric[] = [
    { name: "remote_visible_raw_p50_ms", value: round2(percentile(raw, 50)) },
    { name: "remote_visible_raw_p99_ms", value: round2(percentile(raw, 99)) },
  ];
  ctx.note("W2", `ours: ${summary(ours)}`);
  return [
    { name: "remote_visible_p50_ms", value: round2(percentile(ours, 50)) },
    { name: "remote_visible_p99_ms", value: round2(percentile(ours, 99)) },
    ...metrics,
  ];
}

const round2 = (n: number) => Math.round(n * 100) / 100;
