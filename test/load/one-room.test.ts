/**
 * Load on one room: 200 subscribed sockets, 1,000 writes at a steady rate.
 * Every subscriber must receive every change exactly once and in order.
 * Latency and memory are printed (measured, not asserted: tests never assert
 * on time). The subscribers are plain `ws` sockets with a minimal protocol-4
 * frame reader (poke-reader.ts) so the test harness does not compete with
 * the room for the CPU. one-room-1000.test.ts does the same with 1,000.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import WebSocket from "ws";
import { openSteadyWriter } from "./steady-writer.js";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { workerdRssKiB } from "../helpers/workerd-rss.js";
import { PokeReader } from "./poke-reader.js";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom({ preventEviction: true });
});
afterAll(() => worker?.stop());


const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];

interface Subscriber {
  ws: WebSocket;
  keys: string[];
  seqs: number[];
  reader: PokeReader;
}

function connect(room: string, token: string, onOps: (keys: string[]) => void): Promise<Subscriber> {
  const ws = new WebSocket(`ws://${worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=${token}`);
  const sub: Subscriber = {
    ws,
    keys: [],
    seqs: [],
    reader: new PokeReader(({ keys, seq }) => {
      sub.keys.push(...keys);
      sub.seqs.push(seq);
      onOps(keys);
    }),
  };
  ws.on("message", (data) => sub.reader.read(data.toString()));
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(sub));
    ws.once("error", reject);
  });
}

test("200 subscribers each receive 1,000 writes exactly once and in order", async () => {
  const room = "load-room";
  const SUBSCRIBERS = 200;
  const WRITES = 1_000;
  const INTERVAL_MS = 5;
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const record = (keys: string[]) => {
    const now = performance.now();
    for (const key of keys) {
      const sent = sentAt.get(key);
      if (sent !== undefined) latencies.push(now - sent);
    }
  };
  const subscribers: Subscriber[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) subscribers.push(await connect(room, `user:reader${i}`, record));
  for (const sub of subscribers) sub.ws.send(JSON.stringify({ type: "subscribe", id: "s", source: { shape: "itemsByList", args: { listId: "load" } } }));
  await waitFor(() => subscribers.every((sub) => sub.seqs.length === 1), { message: "all subscribed", timeoutMs: 30_000 });
  const rssBefore = workerdRssKiB();

  const writer = await openSteadyWriter(worker.host, room);
  const { outcomes } = writer;
  const { ids } = await writer.write(WRITES, INTERVAL_MS, "load", () => performance.now(), sentAt);
  // A protocol violation ends the wait at once (the assertions below say which).
  await waitFor(() => subscribers.every((sub) => sub.keys.length >= WRITES) || subscribers.some((sub) => sub.reader.violations.length > 0) || outcomes.some((status) => status !== "applied"), {
    message: "every write delivered",
    timeoutMs: 90_000,
    intervalMs: 50,
  });
  await waitFor(() => outcomes.length === WRITES, { message: "every outcome" });
  const rssAfter = workerdRssKiB();

  for (const sub of subscribers) {
    expect(sub.reader.violations).toEqual([]);
    expect(sub.keys).toEqual(ids); // exactly once each, in write order
    for (let i = 1; i < sub.seqs.length; i++) expect(sub.seqs[i]).toBeGreaterThan(sub.seqs[i - 1]);
  }
  expect(outcomes).toEqual(Array(WRITES).fill("applied"));
  console.log(
    `[load] ${SUBSCRIBERS} subscribers × ${WRITES} writes every ${INTERVAL_MS} ms: delivery p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
      `p99 ${percentile(latencies, 99).toFixed(1)} ms, pokes per subscriber ${subscribers[0].seqs.length - 1}; ` +
      `workerd RSS ${Math.round(rssBefore / 1024)} → ${Math.round(rssAfter / 1024)} MiB`,
  );
  for (const sub of [...subscribers.map((s) => s.ws), writer]) sub.close();
}, 150_000);
