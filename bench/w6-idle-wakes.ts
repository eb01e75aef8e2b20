/**
 * W6 — an idle room with open sockets uses no compute. 100 `LunoraClient`s
 * (one socket each, one subscription each) stay connected and send the
 * keepalive `ping` every second; nothing is written. The bench room counts
 * constructor runs and handler invocations in module state, which the
 * Worker reads without touching the object. idle_wakes = constructor runs +
 * handler invocations during the idle window.
 *
 * After the window, one write checks that the subscriptions survived (and
 * tells whether the object had been evicted, i.e. hibernation was real).
 */
import { LunoraClient } from "../src/index.js";
import WebSocket from "ws";
import type { BenchContext, Metric } from "./lib/context.js";
import { putItems, readWakes } from "./lib/room.js";
import { sleep, until } from "./lib/stats.js";

const SOCKETS = 100;

/** A `ws` class that counts keepalive pings sent and pongs received (proof the sockets were not silent). */
const traffic = { pings: 0, pongs: 0 };
class CountingWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    this.addEventListener("message", (event) => {
      if (event.data === "pong") traffic.pongs++;
    });
  }
  override send(data: any, ...rest: any[]): void {
    if (data === "ping") traffic.pings++;
    (super.send as (...args: unknown[]) => void)(data, ...rest);
  }
}
const PING_INTERVAL_MS = 1_000;

export async function runIdleWakes(ctx: BenchContext): Promise<Metric[]> {
  const idleMs = ctx.quick ? 12_000 : 30_000;
  const room = ctx.freshRoom("w6");
  await putItems(ctx.worker, room, [{ id: "seed", listId: "W6", title: "seed", rank: 0 }]);
  const clients: LunoraClient[] = [];
  const received = new Array<number>(SOCKETS).fill(0);
  const seen = new Array<boolean>(SOCKETS).fill(false);
  try {
    for (let i = 0; i < SOCKETS; i++) {
      const client = new LunoraClient({ host: ctx.worker.host, party: "room", auth: `user:idle${i}`, WebSocket: CountingWebSocket, pingIntervalMs: PING_INTERVAL_MS });
      client.subscribe({
        room,
        source: { shape: "itemsByList", args: { listId: "W6" } },
        handler: {
          cursor: () => undefined,
          applyPoke: ({ ops }) => {
            received[i]++;
            if (ops.some((op) => op.key === "after-idle")) seen[i] = true;
          },
          onError: (error) => console.warn(`  [W6] subscription ${i}: ${error.code} ${error.message}`),
        },
      });
      clients.push(client);
    }
    await until(() => received.every((n) => n > 0), "W6: every socket subscribed", 60_000, 10);
    // Let the room finish whatever the subscriptions started, then count.
    await sleep(500);
    const before = await readWakes(ctx.worker);
    const pingsBefore = { ...traffic };
    await sleep(idleMs);
    const after = await readWakes(ctx.worker);
    const pings = traffic.pings - pingsBefore.pings;
    const pongs = traffic.pongs - pingsBefore.pongs;
    const constructed = after.constructed - before.constructed;
    const handlerCalls = after.handlerCalls - before.handlerCalls;
    const reconnects = clients.filter((client) => client.status !== "connected").length;

    // The subscriptions must still be served: one write reaches all 100.
    await putItems(ctx.worker, room, [{ id: "after-idle", listId: "W6", title: "after", rank: 1 }]);
    await until(() => seen.every(Boolean), "W6: the write after the idle window reached every socket", 30_000, 10);
    const woke = await readWakes(ctx.worker);
    const evicted = woke.constructed - after.constructed > 0;
    const byHandler = Object.entries(after.byHandler)
      .map(([name, n]) => `${name} +${n - (before.byHandler[name] ?? 0)}`)
      .join(", ");
    ctx.note(
      "W6",
      `${SOCKETS} sockets, ping every ${PING_INTERVAL_MS / 1000} s for ${idleMs / 1000} s${ctx.quick ? " (quick mode: shortened window)" : ""} — ${pings} pings sent, ${pongs} pongs received: ` +
        `${constructed} constructor runs, ${handlerCalls} handler calls (${byHandler || "none"}); ` +
        `${reconnects} sockets not connected at the end; object evicted during the window: ${evicted ? "yes (hibernated)" : "no"}; ` +
        `the write after the window reached all ${SOCKETS} subscriptions`,
    );
    return [
      { name: "idle_wakes", value: constructed + handlerCalls },
      { name: "idle_window_s", value: idleMs / 1000 },
    ];
  } finally {
    for (const client of clients) client.close();
  }
}
