/**
 * Reads after an identity switch, against the fixture room in real workerd
 * over loopback: whatever a room connection was doing when the app switched
 * accounts, it ends up subscribed under the new identity and shows nothing of
 * the old one (issue 15).
 */
import { createCollection, type Collection } from "@tanstack/db";
import { WebSocket } from "ws";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { LunoraClient, lunoraCollectionOptions } from "../../src/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { roomCall, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

type Note = { id: string; ownerId: string; body: string };

let worker: LocalWorker;
const cleanups: Array<() => unknown> = [];
let counter = 0;
const freshRoom = () => `ids-${Date.now().toString(36)}-${counter++}`;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(() => worker?.stop());

describe("reads after an identity switch", () => {
  // A reconnect had read alice's token and was still computing its
  // fingerprint when refreshAuth() announced bob. The attempt then connected
  // as alice anyway (its socket was "switched" while partysocket's connect
  // was in progress, which reconnect() cannot interrupt), announced alice
  // back to the client, and subscribed as alice: the collection showed
  // alice's rows again and never resumed as bob.
  test("a connection attempt that read the old token before refreshAuth() reads it again: it subscribes as the new identity, never shows the old one's rows", async () => {
    const room = freshRoom();
    await roomCall(worker, room, "/notes/put", { id: "n-alice", ownerId: "alice", body: "alice's" });
    await roomCall(worker, room, "/notes/put", { id: "n-bob", ownerId: "bob", body: "bob's" });
    let token = "user:alice";
    let holdNextRead = false;
    let releaseHeldRead: (() => void) | undefined;
    const client = new LunoraClient({
      host: worker.host,
      party: "room",
      auth: () => {
        const current = token;
        if (!holdNextRead) return current;
        holdNextRead = false;
        return new Promise<string>((resolve) => (releaseHeldRead = () => resolve(current)));
      },
      WebSocket,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
      pingIntervalMs: 0,
    });
    cleanups.push(() => client.close());
    const notes = createCollection(lunoraCollectionOptions({ client, list: "notes", shardKey: room, load: "eager" }).config) as unknown as Collection<Note, string>;
    cleanups.push(() => notes.cleanup());
    await notes.toArrayWhenReady();
    await waitFor(() => notes.has("n-alice"), { message: "alice's note synced" });

    // A reconnect starts and reads alice's token; the read is held.
    holdNextRead = true;
    client.reconnectRoom(room);
    await waitFor(() => releaseHeldRead !== undefined, { message: "the reconnect is reading the token" });
    token = "user:bob";
    await client.refreshAuth();
    const shownAfterSwitch: string[] = [];
    const watch = notes.subscribeChanges((changes) => {
      for (const change of changes) if (change.type !== "delete") shownAfterSwitch.push(change.value.ownerId);
    });
    cleanups.push(() => watch.unsubscribe());
    releaseHeldRead!();

    await waitFor(() => notes.has("n-bob"), { message: "bob's note synced", timeoutMs: 5_000 });
    expect([...notes.keys()]).toEqual(["n-bob"]);
    expect(shownAfterSwitch).not.toContain("alice");
    expect(client.status).toBe("connected");
  });
});
