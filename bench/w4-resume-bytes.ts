/**
 * W4 — bytes on resume. A shape of 10,000 rows; the client goes offline
 * (a loopback proxy cuts its socket) while the room applies 10,000 changes
 * to 1,000 keys; it reconnects and resumes from its cursor.
 *
 * - resume_bytes: every frame payload (UTF-8) the client received from the
 *   reconnect until the resume was applied (hello included).
 * - snapshot_bytes: the same count for a fresh client subscribing to the same
 *   shape afterwards (what a client without a cursor pays).
 * - changed_final_state_bytes: `JSON.stringify` of the 1,000 changed rows'
 *   final state (the shape's columns): the information a resume must carry.
 */
import { createCollection } from "@tanstack/db";
import { LunoraClient, lunoraCollectionOptions } from "../src/index.js";
import { recordingWebSocket } from "../test/helpers/recording-websocket.js";
import { TcpProxy } from "../test/helpers/tcp-proxy.js";
import type { BenchContext, Metric } from "./lib/context.js";
import { frameBytes, opBytes } from "./lib/op-bytes.js";
import { putItems, roomCall, type BenchItem } from "./lib/room.js";
import { until } from "./lib/stats.js";

const ROWS = 10_000;
const CHANGES = 10_000;
const KEYS = 1_000;

const bytes = frameBytes;

async function subscribedClient(host: string, room: string) {
  const recording = recordingWebSocket();
  const client = new LunoraClient({
    host,
    party: "room",
    auth: "user:w4",
    WebSocket: recording.WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
  });
  const options = lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "W4" } }, shardKey: room, load: "eager" });
  const collection = createCollection(options.config);
  await collection.toArrayWhenReady();
  return { client, collection, log: recording.log };
}

export async function runResumeBytes(ctx: BenchContext): Promise<Metric[]> {
  const room = ctx.freshRoom("w4");
  const prefix = "r"; // keys r0…r9999 (each run has its own room)
  const initial: BenchItem[] = Array.from({ length: ROWS }, (_, i) => ({ id: `${prefix}${i}`, listId: "W4", title: `item ${i}`, rank: i }));
  await putItems(ctx.worker, room, initial);

  const proxy = await TcpProxy.start(ctx.worker.port);
  const a = await subscribedClient(proxy.host, room);
  try {
    await until(() => a.collection.size === ROWS, "W4: initial snapshot");
    // Offline: the proxy cuts the socket and refuses new ones.
    proxy.setOnline(false);
    await until(() => a.client.status === "offline", "W4: client offline");
    await roomCall(ctx.worker, room, "/items/churn", { count: CHANGES, keys: KEYS, prefix });

    // What the changed rows look like now (the final state a resume must deliver).
    const final = initial.slice(0, KEYS).map((row, k) => {
      const last = CHANGES - KEYS + k; // the last churn index that hit key k
      return { id: row.id, listId: row.listId, title: `churn ${last}`, rank: row.rank + CHANGES / KEYS };
    });
    const changedFinalStateBytes = Buffer.byteLength(JSON.stringify(final), "utf8");

    const before = a.log.frames.length;
    proxy.setOnline(true);
    const lastRow = final[KEYS - 1];
    await until(() => (a.collection.get(lastRow.id) as BenchItem | undefined)?.title === lastRow.title, "W4: resume applied", 60_000);
    const resumeFrames = a.log.frames.slice(before);
    const resumeBytes = bytes(resumeFrames);
    const resets = resumeFrames.filter((frame) => frame.includes('"resets"')).length;
    // Where the resume's bytes go: row data (rows, patches, deleted keys),
    // the envelope of the ops (protocol 4: block headers `[group, kind, …]`;
    // protocol ≤ 3: `{"op","sub","key"}` per op), the rest (hello, frame headers, cursor).
    const split = opBytes(resumeFrames);
    const ops = split.items;

    // A fresh client without a cursor: a full snapshot of the shape as it is now.
    const b = await subscribedClient(ctx.worker.host, room);
    const snapshotBytes = bytes(b.log.frames);
    b.collection.cleanup();
    b.client.close();

    ctx.note(
      "W4",
      `resume: ${resumeFrames.length} frames, ${ops} row ops, ${resets} resets; snapshot: ${b.log.frames.length} frames; ` +
        `resume bytes per changed row ${(resumeBytes / KEYS).toFixed(1)} vs ${(changedFinalStateBytes / KEYS).toFixed(1)} of row JSON; ` +
        `resume = ${split.itemBytes} row JSON + ${split.opsBytes - split.itemBytes} op envelopes (${((split.opsBytes - split.itemBytes) / ops).toFixed(1)} B per op) + ${resumeBytes - split.opsBytes} hello/frame/cursor`,
    );
    return [
      { name: "resume_bytes", value: resumeBytes },
      { name: "snapshot_bytes", value: snapshotBytes },
      { name: "changed_final_state_bytes", value: changedFinalStateBytes },
    ];
  } finally {
    a.collection.cleanup();
    a.client.close();
    await proxy.stop();
  }
}
