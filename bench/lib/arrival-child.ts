/**
 * Child process holding some of W2b's sockets (see arrivals.ts). It opens
 * sockets when asked, and for each "watch" stamps, per socket, the first
 * frame whose text contains the marker; when every socket of that group has
 * it, it reports the earliest and latest stamp to the parent over IPC.
 *
 * Stamps are `process.hrtime` (CLOCK_MONOTONIC on Linux: one clock for every
 * process of the machine, never stepped by NTP), so the parent can subtract
 * its own `process.hrtime` taken before the write. The parent checks that
 * this holds at startup ("clock" round trip).
 */
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";
import { monotonicMs, type ChildReport, type ParentCommand } from "./arrival-protocol.js";

interface Group {
  sockets: WebSocket[];
  /** The marker being watched, or null. */
  marker: string | null;
  watchId: number;
  arrivedAt: Float64Array;
  arrived: number;
  bytes: number;
}

const groups = new Map<string, Group>();

function send(report: ChildReport): void {
  process.send!(report);
}

function onFrame(group: Group, index: number, data: WebSocket.RawData): void {
  const now = monotonicMs();
  if (group.marker === null || !Number.isNaN(group.arrivedAt[index])) return;
  const text = data.toString();
  if (!text.includes(group.marker)) return;
  group.arrivedAt[index] = now;
  group.bytes = Buffer.byteLength(text, "utf8");
  if (++group.arrived < group.sockets.length) return;
  let first = Infinity;
  let last = -Infinity;
  for (const t of group.arrivedAt) {
    if (t < first) first = t;
    if (t > last) last = t;
  }
  const watchId = group.watchId;
  group.marker = null;
  send({ type: "arrived", watchId, first, last, frameBytes: group.bytes });
}

async function openGroup(name: string, urls: string[], subscribe: unknown | undefined): Promise<void> {
  const group: Group = { sockets: [], marker: null, watchId: -1, arrivedAt: new Float64Array(urls.length).fill(Number.NaN), arrived: 0, bytes: 0 };
  groups.set(name, group);
  let answered = 0;
  // A few connections at a time: 1,000 simultaneous upgrades only measure workerd's accept queue.
  const BATCH = 25;
  for (let start = 0; start < urls.length; start += BATCH) {
    await Promise.all(
      urls.slice(start, start + BATCH).map(async (url, offset) => {
        const index = start + offset;
        // No permessage-deflate (ws offers it by default and workerd accepts):
        // with it, workerd compresses every send and each reader inflates
        // every frame, the same for both sides of the comparison, and on 2
        // shared cores that common cost would hide the room's own per-socket
        // work, which is what W2b compares.
        const ws = new WebSocket(url, { perMessageDeflate: false });
        group.sockets[index] = ws;
        let first = true;
        ws.on("message", (data) => {
          if (first && subscribe !== undefined) {
            // The answer to `subscribe` (hello comes first: wait for a poke).
            if (data.toString().startsWith('{"type":"poke')) {
              first = false;
              answered++;
            }
            return;
          }
          onFrame(group, index, data);
        });
        await new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
        });
        if (subscribe !== undefined) ws.send(JSON.stringify(subscribe));
      }),
    );
  }
  if (subscribe !== undefined) {
    const started = Date.now();
    while (answered < urls.length) {
      if (Date.now() - started > 120_000) throw new Error(`arrival child: ${answered}/${urls.length} subscriptions answered`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

process.on("message", async (command: ParentCommand) => {
  try {
    switch (command.type) {
      case "clock":
        send({ type: "clock", now: monotonicMs() });
        break;
      case "open": {
        const urls = Array.from({ length: command.count }, (_, i) => {
          const base = command.url.replace(/\/$/, "");
          return command.kind === "lunora"
            ? `${base}?v=${PROTOCOL_VERSION}&token=user:${command.tokenPrefix}${command.firstIndex + i}`
            : base;
        });
        await openGroup(command.group, urls, command.kind === "lunora" ? command.subscribe : undefined);
        send({ type: "opened", group: command.group });
        break;
      }
      case "watch": {
        const group = groups.get(command.group)!;
        group.marker = command.marker;
        group.watchId = command.watchId;
        group.arrivedAt.fill(Number.NaN);
        group.arrived = 0;
        send({ type: "watching", watchId: command.watchId });
        break;
      }
      case "progress": {
        const group = groups.get(command.group)!;
        const open = group.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
        send({ type: "progress", arrived: group.arrived, of: group.sockets.length, open, marker: group.marker });
        break;
      }
      case "close": {
        await Promise.all(
          [...groups.values()].flatMap((group) =>
            group.sockets.map(
              (ws) =>
                new Promise<void>((resolve) => {
                  if (ws.readyState === WebSocket.CLOSED) return resolve();
                  ws.once("close", () => resolve());
                  ws.close();
                }),
            ),
          ),
        );
        process.exit(0);
      }
    }
  } catch (error) {
    send({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  }
});
send({ type: "started" });
