/**
 * Load on one room at fan-out scale: 1,000 subscribed sockets, 250 writes at
 * a steady rate. Every subscriber must receive every change exactly once and
 * in order. The subscribers live in 4 child processes (subscriber-child.ts,
 * 250 sockets each, protocol-4 frame reader poke-reader.ts), so reading
 * 1,000 sockets' frames does not compete with this process, which writes and
 * checks. Latency and memory are printed (measured, not asserted: tests
 * never assert on time).
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { openSteadyWriter } from "./steady-writer.js";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { workerdRssKiB } from "../helpers/workerd-rss.js";
import { SubscriberChildren } from "./subscriber-children.js";
import { monotonicMs } from "./subscriber-protocol.js";

const SUBSCRIBERS = 1_000;
const CHILDREN = 4;
const WRITES = 250;
const INTERVAL_MS = 10;

let worker: LocalWorker;
let children: SubscriberChildren | undefined;
beforeAll(async () => {
  worker = await startFixtureRoom({ preventEviction: true });
});
afterAll(async () => {
  await children?.close();
  await worker?.stop();
});

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];

test("1,000 subscribers each receive 250 writes exactly once and in order", async () => {
  const room = "load-room-1000";
  const source = { shape: "itemsByList", args: { listId: "load" } };
  children = await SubscriberChildren.start(CHILDREN);
  const openedAt = performance.now();
  await children.open(`ws://${worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token={token}`, SUBSCRIBERS, { type: "subscribe", id: "s", source });
  const openMs = performance.now() - openedAt;
  const rssBefore = workerdRssKiB();

  const writer = await openSteadyWriter(worker.host, room);
  const { outcomes } = writer;
  const { ids, sentAt } = await writer.write(WRITES, INTERVAL_MS, "load", monotonicMs);
  // Polled over IPC, so not too often; a violation anywhere or a refused
  // write ends the wait at once (the assertions say which).
  await waitFor(
    async () => {
      const { minKeys, withViolations } = await children!.progress();
      return minKeys >= WRITES || withViolations > 0 || outcomes.some((status) => status !== "applied");
    },
    { message: "every write delivered to every subscriber", timeoutMs: 90_000, intervalMs: 250 },
  );
  await waitFor(() => outcomes.length === WRITES, { message: "every outcome" });
  const rssAfter = workerdRssKiB();
  const { subscribers, latencies } = await children.collect(sentAt);

  expect(subscribers).toHaveLength(SUBSCRIBERS);
  for (const sub of subscribers) {
    expect(sub.violations).toEqual([]);
    expect(sub.keys).toEqual(ids); // exactly once each, in write order
    for (let i = 1; i < sub.seqs.length; i++) expect(sub.seqs[i]).toBeGreaterThan(sub.seqs[i - 1]);
  }
  expect(outcomes).toEqual(Array(WRITES).fill("applied"));
  const pokes = subscribers.map((sub) => sub.seqs.length - 1);
  console.log(
    `[load] ${SUBSCRIBERS} subscribers (${CHILDREN} processes) × ${WRITES} writes every ${INTERVAL_MS} ms: opened in ${(openMs / 1000).toFixed(1)} s; ` +
      `delivery p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${latencies.reduce((a, b) => Math.max(a, b), 0).toFixed(1)} ms; ` +
      `pokes per subscriber ${Math.min(...pokes)}–${Math.max(...pokes)}; workerd RSS ${Math.round(rssBefore / 1024)} → ${Math.round(rssAfter / 1024)} MiB`,
  );
  writer.close();
}, 150_000);
