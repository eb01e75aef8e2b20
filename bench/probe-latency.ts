/**
 * Where W2's milliseconds go, measured with raw protocol sockets (no client
 * library) against the bench room:
 *
 *   npx tsx bench/probe-latency.ts [writes]
 *
 * 1. round trips on one socket: `ping` (answered by the runtime), a frame the
 *    room answers without writing, and a push that writes one row (ack in a poke);
 * 2. push → poke at an observer with 1, 10, 50 and 100 subscribed sockets,
 *    the observer first, in the middle and last in the room's socket list
 *    (the other sockets live in a child process); then again with those
 *    sockets paused, so the CPU they take on this 2-core machine to read
 *    frames is out of the picture.
 */
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { openFanout } from "./lib/fanout.js";
import { steady } from "./lib/raw-subscribers.js";
import { startBenchRoom } from "./lib/room.js";
import { percentile, sleep, until } from "./lib/stats.js";
import { PROTOCOL_VERSION } from "../src/protocol/index.js";
import { putKeys } from "./lib/op-bytes.js";

const writes = Number(process.argv[2] ?? 200);
const worker = await startBenchRoom();
let rooms = 0;
const SOURCE = { shape: "itemsByList", args: { listId: "P" } };
const fmt = (values: number[]) => `p50 ${percentile(values, 50).toFixed(2)}  p90 ${percentile(values, 90).toFixed(2)}  p99 ${percentile(values, 99).toFixed(2)} ms`;

async function open(room: string, token: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://${worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=${token}`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return ws;
}

async function roundTrips(): Promise<void> {
  const ws = await open(`rtt${rooms++}`, "user:rtt");
  let waiting: (() => void) | undefined;
  ws.on("message", (data) => {
    if (!data.toString().startsWith('{"type":"hello')) waiting?.();
  });
  await sleep(200);
  const measure = async (label: string, send: (i: number) => void) => {
    const values: number[] = [];
    for (let i = 0; i < writes; i++) {
      const answered = new Promise<void>((resolve) => (waiting = resolve));
      const t0 = performance.now();
      send(i);
      await answered;
      values.push(performance.now() - t0);
      await sleep(5);
    }
    console.log(`  ${label.padEnd(44)} ${fmt(values)}`);
  };
  const clientId = randomUUID();
  console.log("round trips on one socket:");
  await measure("ping → pong (runtime auto-response)", () => ws.send("ping"));
  await measure("frame answered without a write", () => ws.send(JSON.stringify({ type: "subscribe", id: "x", source: { shape: "nope" } })));
  await measure("push of one insert → its ack poke", (i) =>
    ws.send(JSON.stringify({ type: "push", clientId, mutations: [{ clientSeq: i + 1, name: "items:create", args: { id: randomUUID(), listId: "Q", title: "t" } }] })),
  );
  ws.close();
}

async function fanout(sockets: number, position: "first" | "middle" | "last"): Promise<void> {
  const room = `fan${rooms++}`;
  const others = sockets - 2; // observer and writer are subscribed too
  const before = position === "first" ? 0 : position === "last" ? others : Math.floor(others / 2);
  const fan1 = await openFanout(worker.host, room, before, SOURCE);
  const observer = await open(room, "user:observer");
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  observer.on("message", (data) => {
    const now = performance.now();
    const text = data.toString();
    if (!text.startsWith('{"type":"poke')) return;
    for (const key of putKeys(text)) {
      const sent = sentAt.get(key as string);
      if (sent !== undefined) latencies.push(now - sent);
    }
  });
  observer.send(JSON.stringify({ type: "subscribe", id: "s", source: SOURCE }));
  const fan2 = await openFanout(worker.host, room, others - before, SOURCE);
  const writer = await open(room, "user:writer");
  writer.send(JSON.stringify({ type: "subscribe", id: "s", source: SOURCE }));
  await sleep(300);
  const clientId = randomUUID();
  await steady(writes, 50, (i) => {
    const id = randomUUID();
    sentAt.set(id, performance.now());
    writer.send(JSON.stringify({ type: "push", clientId, mutations: [{ clientSeq: i + 1, name: "items:create", args: { id, listId: "P", title: `w${i}` } }] }));
  });
  await until(() => latencies.length === writes, "every write observed", 60_000, 5);
  console.log(`  ${`${sockets} sockets, observer ${position}`.padEnd(44)} ${fmt(latencies)}`);
  observer.close();
  writer.close();
  await fan1.close();
  await fan2.close();
}

try {
  await roundTrips();
  console.log(`push → poke at the observer, ${writes} writes at 50/s:`);
  await fanout(2, "first");
  await fanout(10, "middle");
  await fanout(50, "middle");
  await fanout(100, "first");
  await fanout(100, "middle");
  await fanout(100, "last");
  // The same with the other sockets not reading (no receiving CPU on this
  // machine): what is left is the room's own fan-out.
  process.env.LUNORA_BENCH_PAUSE_FANOUT = "1";
  console.log("the same, other sockets paused (they cost no CPU here; the kernel buffers their frames):");
  await fanout(100, "first");
  await fanout(100, "middle");
  await fanout(100, "last");
} finally {
  await worker.stop();
}
process.exit(0);
