import { afterEach } from "vitest";
import { LunoraClient, type LunoraClientOptions } from "../../../src/client/index.js";
import type { LunoraApi, AnyLunoraApi, LunoraError } from "../../../src/protocol/index.js";
import { countingWebSocket } from "./counting-websocket.js";
import { eventually } from "./eventually.js";
import { ScriptedRoom } from "./scripted-room.js";

export interface Harness<Api extends LunoraApi> {
  room: ScriptedRoom;
  client: LunoraClient<Api>;
  /** Client-level errors (`client.onError`), in order. */
  clientErrors: Array<{ error: LunoraError; room: string }>;
  /** Frames the client has received (and therefore processed) so far. */
  received: () => number;
  /** Waits until the client has processed `count` more frames than `since`. */
  processed: (since: number, count: number) => Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** Starts a scripted room and a client pointed at it; both are torn down after the test. */
export async function startHarness<Api extends LunoraApi = AnyLunoraApi>(
  options: Partial<LunoraClientOptions> = {},
): Promise<Harness<Api>> {
  const room = await ScriptedRoom.start();
  cleanups.push(() => room.stop());
  const counting = countingWebSocket();
  const client = new LunoraClient<Api>({
    host: room.host,
    party: "chat",
    WebSocket: counting.WebSocket,
    // Fast retries keep the suite quick; nothing asserts on them.
    reconnect: { minDelayMs: 10, maxDelayMs: 100 },
    pingIntervalMs: 0,
    ...options,
  });
  cleanups.push(() => client.close());
  const clientErrors: Harness<Api>["clientErrors"] = [];
  client.onError((error, context) => clientErrors.push({ error, room: context.room }));
  return {
    room,
    client,
    clientErrors,
    received: counting.received,
    processed: (since, count) =>
      eventually(() => {
        if (counting.received() < since + count) throw new Error(`client processed ${counting.received() - since}/${count} frames`);
      }),
  };
}

/** Registers extra teardown (collections) for the current test. */
export function onCleanup(cleanup: () => Promise<void> | void): void {
  cleanups.push(cleanup);
}
