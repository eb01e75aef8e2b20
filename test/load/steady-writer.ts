import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";

/**
 * The load tests' writer: a plain socket that pushes `count` `items:create`
 * mutations into list `listId` at a steady rate (write i leaves at
 * start + i × `intervalMs`), stamping each with `clock` as it leaves, and
 * collects the statuses of their outcomes.
 */
export async function openSteadyWriter(host: string, room: string) {
  const outcomes: string[] = [];
  const ws = new WebSocket(`ws://${host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=user:writer`);
  ws.on("message", (data) => {
    const text = data.toString();
    if (text.includes('"mutations"')) outcomes.push(...(JSON.parse(text) as { mutations: Array<{ status: string }> }).mutations.map((m) => m.status));
  });
  await new Promise((resolve) => ws.once("open", resolve));
  const clientId = randomUUID();

  /** `sentAt` (id → `clock()` when it left) may be the caller's, read while the writes are still going out. */
  async function write(
    count: number,
    intervalMs: number,
    listId: string,
    clock: () => number,
    sentAt = new Map<string, number>(),
  ): Promise<{ ids: string[]; sentAt: Map<string, number> }> {
    const ids: string[] = [];
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const id = randomUUID();
      ids.push(id);
      const due = started + i * intervalMs - performance.now();
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
      sentAt.set(id, clock());
      ws.send(JSON.stringify({ type: "push", clientId, mutations: [{ clientSeq: i + 1, name: "items:create", args: { id, listId, title: `w${i}` } }] }));
    }
    return { ids, sentAt };
  }

  return { ws, outcomes, write, close: () => ws.close() };
}
