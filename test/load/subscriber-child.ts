/**
 * A child process holding some of the 1,000-subscriber load test's sockets,
 * so reading 1,000 sockets' frames is spread over several event loops and
 * does not compete with the test process (which writes). Each socket has its
 * own PokeReader; arrival of each poke is stamped with the machine-wide
 * monotonic clock.
 */
import WebSocket from "ws";
import { PokeReader } from "./poke-reader.js";
import { monotonicMs, type FromChild, type SubscriberLog, type ToChild } from "./subscriber-protocol.js";

interface Subscriber {
  ws: WebSocket;
  keys: string[];
  seqs: number[];
  reader: PokeReader;
  /** Arrival (monotonic ms) of each entry of `keys`. */
  arrivals: number[];
}

const subscribers: Subscriber[] = [];
const send = (message: FromChild) => process.send!(message);

async function open(url: string, count: number, firstIndex: number, subscribe: unknown): Promise<void> {
  // A few upgrades at a time: all of them at once only measures workerd's accept queue.
  const BATCH = 25;
  for (let start = 0; start < count; start += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, count - start) }, async (_, offset) => {
        const ws = new WebSocket(url.replace("{token}", `user:reader${firstIndex + start + offset}`));
        const sub: Subscriber = {
          ws,
          keys: [],
          seqs: [],
          arrivals: [],
          reader: new PokeReader(({ keys, seq }) => {
            const now = monotonicMs();
            sub.keys.push(...keys);
            for (let i = 0; i < keys.length; i++) sub.arrivals.push(now);
            sub.seqs.push(seq);
          }),
        };
        ws.on("message", (data) => sub.reader.read(data.toString()));
        ws.on("close", (code) => sub.reader.violations.push(`socket closed (${code})`));
        subscribers.push(sub);
        await new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
        });
        ws.send(JSON.stringify(subscribe));
      }),
    );
  }
  const started = Date.now();
  while (!subscribers.every((sub) => sub.seqs.length >= 1 || sub.reader.violations.length > 0)) {
    if (Date.now() - started > 60_000) throw new Error(`subscriber child: ${subscribers.filter((s) => s.seqs.length > 0).length}/${count} subscriptions answered`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

process.on("message", async (message: ToChild) => {
  try {
    switch (message.type) {
      case "open":
        await open(message.url, message.count, message.firstIndex, message.subscribe);
        send({ type: "opened" });
        break;
      case "progress":
        send({
          type: "progress",
          minKeys: Math.min(...subscribers.map((sub) => sub.keys.length)),
          withViolations: subscribers.filter((sub) => sub.reader.violations.length > 0).length,
        });
        break;
      case "collect": {
        const latencies: number[] = [];
        for (const sub of subscribers) {
          sub.keys.forEach((key, i) => {
            const sent = message.sentAt[key];
            if (sent !== undefined) latencies.push(sub.arrivals[i] - sent);
          });
        }
        send({
          type: "collected",
          subscribers: subscribers.map((sub): SubscriberLog => ({ keys: sub.keys, seqs: sub.seqs, violations: sub.reader.violations })),
          latencies,
        });
        break;
      }
      case "close":
        for (const sub of subscribers) {
          sub.ws.removeAllListeners("close");
          sub.ws.close();
        }
        process.exit(0);
    }
  } catch (error) {
    send({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  }
});
send({ type: "started" });
