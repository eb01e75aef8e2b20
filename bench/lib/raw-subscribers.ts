import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";

/**
 * Plain `ws` sockets subscribed to a shape: the room's fan-out load in W2,
 * at almost no client CPU (frames are received and dropped).
 */
export async function openRawSubscribers(host: string, room: string, count: number, source: unknown): Promise<{ close(): Promise<void> }> {
  const sockets: WebSocket[] = [];
  let snapshots = 0;
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket(`ws://${host}/parties/room/${encodeURIComponent(room)}?v=${PROTOCOL_VERSION}&token=user:fan${i}`);
    ws.on("message", (data) => {
      const text = data.toString();
      if (text.startsWith('{"type":"poke') && text.includes('"resets"')) snapshots++;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ type: "subscribe", id: "s", source }));
    sockets.push(ws);
  }
  const started = Date.now();
  while (snapshots < count) {
    if (Date.now() - started > 60_000) throw new Error(`raw subscribers: ${snapshots}/${count} snapshots`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Probe only (bench/probe-latency.ts): stop reading, so these sockets cost no
  // CPU on this machine and the kernel buffers what the room sends them.
  if (process.env.LUNORA_BENCH_PAUSE_FANOUT === "1") for (const ws of sockets) ws.pause();
  return {
    close: async () => {
      await Promise.all(
        sockets.map(
          (ws) =>
            new Promise<void>((resolve) => {
              if (ws.readyState === WebSocket.CLOSED) return resolve();
              ws.once("close", () => resolve());
              ws.close();
            }),
        ),
      );
    },
  };
}

/**
 * Calls `write(i)` for i = 0…count-1 at a steady rate (absolute schedule, so
 * a slow write does not shift the ones after it).
 */
export async function steady(count: number, perSecond: number, write: (i: number) => void): Promise<void> {
  const interval = 1000 / perSecond;
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    write(i);
  }
}
