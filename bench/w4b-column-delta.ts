/**
 * W4b — bytes of column updates. A shape of 1,000 rows of the bench room's
 * 10-column `wide` table (≈ 250 B of JSON each); a plain socket subscribed
 * to it. The room then changes ONE small column (`n`, an integer, +1) of
 * every row: 1,000 updates of 1,000 distinct rows, written as 10
 * transactions of 100 (`/wide/bump`, plain `sql.exec`; one flush and one
 * poke per transaction, so the per-poke envelope is amortized the way a busy
 * room amortizes it, without hiding the per-update cost).
 *
 * - delta_update_bytes: UTF-8 bytes of every poke frame the socket received
 *   for those updates (from the first to the last poke; the subscribe's
 *   snapshot excluded).
 * - changed_columns_bytes: `JSON.stringify` of the 1,000 updates as
 *   `{ id, n }` (key + changed column, final values): what an update must
 *   carry at least.
 *
 * The socket is a raw protocol client, and the count depends on nothing but
 * the frames' text (protocol 3 ships whole rows, protocol 4 patches).
 * Deterministic: one run.
 */
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../src/protocol/index.js";
import type { BenchContext, Metric } from "./lib/context.js";
import { frameBytes, opBytes } from "./lib/op-bytes.js";
import { roomCall } from "./lib/room.js";
import { until } from "./lib/stats.js";

const ROWS = 1_000;
const PER_TRANSACTION = 100;
const LIST = "W4B";

const id = (i: number) => `w${String(i).padStart(4, "0")}`;

/** A 10-column row with realistic widths: two texts, three short strings, four numbers. */
function wideRow(i: number) {
  return {
    id: id(i),
    listId: LIST,
    title: `Quarterly planning item number ${i}`,
    body: `Notes for item ${i}: agree on the scope, name an owner, list the open questions and the date of the next review.`,
    author: `user-${(i * 7919) % 997}`,
    status: ["open", "doing", "review", "done"][i % 4],
    priority: i % 5,
    n: 0,
    createdAt: 1_764_000_000_000 + i * 60_000,
    updatedAt: 1_764_500_000_000 + i * 60_000,
  };
}

const isPokeFrame = (frame: string) => frame.startsWith('{"type":"poke');
/** A frame that completes a poke (`poke`, or the `pokeEnd` of a multi-frame one). */
const endsPoke = (frame: string) => frame.startsWith('{"type":"poke",') || frame.startsWith('{"type":"pokeEnd"');

export async function runColumnDelta(ctx: BenchContext): Promise<Metric[]> {
  const room = ctx.freshRoom("w4b");
  const rows = Array.from({ length: ROWS }, (_, i) => wideRow(i));
  await roomCall(ctx.worker, room, "/wide/put", rows);

  const frames: string[] = [];
  const ws = new WebSocket(`ws://${ctx.worker.host}/parties/room/${encodeURIComponent(room)}?v=${PROTOCOL_VERSION}&token=user:w4b`);
  ws.on("message", (data) => frames.push(data.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ type: "subscribe", id: "s", source: { shape: "wideByList", args: { listId: LIST } } }));
    // The snapshot: every row, then the end of that poke.
    await until(() => frames.some((f) => f.includes(`"${id(ROWS - 1)}"`)) && endsPoke(frames[frames.length - 1]), "W4b: snapshot", 60_000, 5);
    const snapshotBytes = frameBytes(frames);
    const start = frames.length;

    for (let from = 0; from < ROWS; from += PER_TRANSACTION) {
      const ids = rows.slice(from, from + PER_TRANSACTION).map((row) => row.id);
      const before = frames.length;
      await roomCall(ctx.worker, room, "/wide/bump", { ids });
      const last = `"${ids[ids.length - 1]}"`;
      // This transaction's poke is in when a frame names its last row and a frame at or after it ends a poke.
      await until(
        () => {
          const at = frames.findIndex((f, i) => i >= before && f.includes(last));
          return at >= 0 && frames.slice(at).some(endsPoke);
        },
        "W4b: the update poke",
        30_000,
        2,
      );
    }
    const updateFrames = frames.slice(start).filter(isPokeFrame);
    const deltaUpdateBytes = frameBytes(updateFrames);
    const changed = rows.map((row) => ({ id: row.id, n: row.n + 1 }));
    const changedColumnsBytes = Buffer.byteLength(JSON.stringify(changed), "utf8");
    const wholeRowsBytes = Buffer.byteLength(JSON.stringify(rows.map((row) => ({ ...row, n: row.n + 1 }))), "utf8");
    const split = opBytes(updateFrames);
    ctx.note(
      "W4b",
      `${ROWS} updates of one column (n) in ${ROWS / PER_TRANSACTION} transactions → ${updateFrames.length} poke frames, ${split.items} items; ` +
        `${(deltaUpdateBytes / ROWS).toFixed(1)} B per update vs ${(changedColumnsBytes / ROWS).toFixed(1)} B of key + changed column ` +
        `(whole rows would be ${(wholeRowsBytes / ROWS).toFixed(1)} B); frames = ${split.itemBytes} item JSON + ${split.opsBytes - split.itemBytes} op envelopes + ` +
        `${deltaUpdateBytes - split.opsBytes} frame/cursor; snapshot of the shape ${snapshotBytes} B`,
    );
    return [
      { name: "delta_update_bytes", value: deltaUpdateBytes },
      { name: "changed_columns_bytes", value: changedColumnsBytes },
      { name: "delta_whole_rows_bytes", value: wholeRowsBytes },
    ];
  } finally {
    ws.close();
  }
}
