/**
 * W2 — remote visibility. 100 sockets are subscribed to one shape of a room.
 * Two paths write into it, interleaved write by write at a steady 50 writes/s
 * in all, so machine noise (this is a shared 2-core VM) hits both alike:
 *
 * - ours: client A writes a row through an action (durable outbox,
 *   optimistic row, A's own collection subscribed); latency = from calling
 *   the action to the row being in client B's collection (its change listener
 *   fires). A and B are `LunoraClient`s with collections.
 * - raw protocol (the baseline): a plain socket pushes the same mutation and
 *   a plain socket timestamps the poke frame carrying it.
 *
 * The difference is what the client stack (outbox, collections, TanStack)
 * adds. The other 96 sockets live in a child process, so the frames they
 * receive do not queue in front of B's in the measuring event loop (they are
 * other devices). B and the raw observer sit next to each other in the
 * middle of the room's socket list.
 */
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import type { BenchContext, Metric } from "./lib/context.js";
import { openFanout } from "./lib/fanout.js";
import { steady } from "./lib/raw-subscribers.js";
import { startReader, startWriter } from "./lib/writer.js";
import { percentile, sleep, until } from "./lib/stats.js";
import { PROTOCOL_VERSION } from "../src/protocol/index.js";
import { putKeys } from "./lib/op-bytes.js";

const SOCKETS = 100;
/** Writes per second, both paths together. */
const RATE = 50;
const LIST = "W2";
const SOURCE = { shape: "itemsByList", args: { listId: LIST } };

/** A plain socket of the raw protocol, open and subscribed to the W2 shape. */
async function rawSocket(host: string, room: string, token: string, onFrame?: (text: string, at: number) => void): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=${token}`);
  if (onFrame) ws.on("message", (data) => onFrame(data.toString(), performance.now()));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  ws.send(JSON.stringify({ type: "subscribe", id: "s", source: SOURCE }));
  return ws;
}

export async function runRemoteVisible(ctx: BenchContext): Promise<Metric[]> {
  const writes = ctx.quick ? 250 : 1_000; // per path
  const room = ctx.freshRoom("w2");
  const host = ctx.worker.host;

  // Raw observer: when each raw write's row arrives in a poke.
  const rawSentAt = new Map<string, number>();
  const raw: number[] = [];
  const onObserved = (text: string, at: number) => {
    if (!text.startsWith('{"type":"poke')) return;
    for (const key of putKeys(text)) {
      const sent = rawSentAt.get(key as string);
      if (sent !== undefined) raw.push(at - sent);
    }
  };

  const others = SOCKETS - 4; // A, B, the raw writer and the raw observer are the other four
  const fan1 = await openFanout(host, room, Math.floor(others / 2), SOURCE);
  const observer = await rawSocket(host, room, "user:observer", onObserved);
  const reader = await startReader(host, room, LIST, "user:reader");
  const fan2 = await openFanout(host, room, others - Math.floor(others / 2), SOURCE);
  const rawWriter = await rawSocket(host, room, "user:raw-writer");
  const writer = startWriter({ host, room, listId: LIST, token: "user:writer" });
  try {
    await writer.db.collections.items.toArrayWhenReady();
    await writer.db.executor.waitForInit();
    // Warm-up: a few writes through both paths (JIT, outbox init).
    const rawClientId = randomUUID();
    let rawSeq = 0;
    const rawPush = (title: string) => {
      const id = randomUUID();
      rawWriter.send(JSON.stringify({ type: "push", clientId: rawClientId, mutations: [{ clientSeq: ++rawSeq, name: "items:create", args: { id, listId: LIST, title } }] }));
      return id;
    };
    for (let i = 0; i < 20; i++) {
      await writer.insert(`warm ${i}`).transaction.isPersisted.promise;
      rawPush(`warm raw ${i}`);
    }
    await until(() => reader.collection.size === 40, "W2: warm-up rows at B", 30_000, 5);
    await sleep(200);

    const startedAt = new Map<string, number>();
    const persisted: Promise<unknown>[] = [];
    // Even ticks ours, odd ticks raw: one write of each every 40 ms.
    await steady(2 * writes, RATE, (i) => {
      if (i % 2 === 1) {
        const t0 = performance.now();
        const id = rawPush(`r${i}`);
        rawSentAt.set(id, t0);
        return;
      }
      const t0 = performance.now();
      const { id, transaction } = writer.insert(`w${i}`);
      startedAt.set(id, t0);
      persisted.push(transaction.isPersisted.promise);
    });
    await Promise.all(persisted);
    await until(() => [...startedAt.keys()].every((id) => reader.seenAt.has(id)), "W2: every write visible at B", 60_000, 5);
    await until(() => raw.length === writes, "W2 raw: every write observed", 60_000, 5);
    const ours = [...startedAt].map(([id, t0]) => reader.seenAt.get(id)! - t0);

    const summary = (values: number[]) => `p50 ${percentile(values, 50).toFixed(1)}, p90 ${percentile(values, 90).toFixed(1)}, p99 ${percentile(values, 99).toFixed(1)}, max ${Math.max(...values).toFixed(1)} ms`;
    ctx.note("W2", `${writes} writes per path, interleaved at ${RATE}/s in all, ${SOCKETS} subscribed sockets. raw protocol: ${summary(raw)}`);
    ctx.note("W2", `ours: ${summary(ours)}`);
    return [
      { name: "remote_visible_p50_ms", value: round2(percentile(ours, 50)) },
      { name: "remote_visible_p99_ms", value: round2(percentile(ours, 99)) },
      { name: "remote_visible_raw_p50_ms", value: round2(percentile(raw, 50)) },
      { name: "remote_visible_raw_p99_ms", value: round2(percentile(raw, 99)) },
    ];
  } finally {
    await writer.close();
    await reader.close();
    observer.close();
    rawWriter.close();
    await fan1.close();
    await fan2.close();
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;
