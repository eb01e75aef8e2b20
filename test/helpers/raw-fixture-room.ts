/**
 * The fixture room in real workerd for a test file that talks the protocol
 * over raw sockets: started before the file's tests, stopped (with every
 * socket it opened) after them.
 */
import { afterAll, beforeAll } from "vitest";
import type { LocalWorker } from "../../src/testing/index.js";
import { startFixtureRoom } from "./fixture-room.js";
import { RawSocket } from "./raw-socket.js";
import { waitFor } from "./wait-for.js";

export interface RawFixtureRoom {
  /** The running worker (from the file's `beforeAll` on). */
  readonly worker: LocalWorker;
  /** A room name no other test of the run uses. */
  freshRoom(): string;
  /** A raw socket to `room` under `token`, once the room's `hello` arrived. */
  connect(room: string, token?: string): Promise<RawSocket>;
}

/** Registers the file's `beforeAll` / `afterAll`; room names start with `prefix`. */
export function useRawFixtureRoom(prefix: string): RawFixtureRoom {
  let worker: LocalWorker | undefined;
  const sockets: RawSocket[] = [];
  let counter = 0;
  beforeAll(async () => {
    worker = await startFixtureRoom();
  });
  afterAll(async () => {
    await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
    await worker?.stop();
  });
  const running = (): LocalWorker => {
    if (!worker) throw new Error("the fixture room starts in beforeAll");
    return worker;
  };
  return {
    get worker() {
      return running();
    },
    freshRoom: () => `${prefix}-${Date.now().toString(36)}-${counter++}`,
    // No `this`: test files destructure `connect`.
    async connect(room, token = "user:alice") {
      const socket = await RawSocket.connect(running().host, room, { token });
      sockets.push(socket);
      await waitFor(() => socket.frames.some((frame) => frame.type === "hello"), { message: "hello" });
      return socket;
    },
  };
}
