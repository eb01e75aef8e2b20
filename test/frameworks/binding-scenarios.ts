/**
 * The behaviour every framework binding (Vue, Solid, Svelte) must show,
 * written once and run by each framework's test file against the real
 * fixture room in local workerd. A binding is seen through an observer of
 * its framework's own reactivity (a Vue watcher, a Solid effect, a Svelte
 * subscription), so a value that changes without notifying fails here.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { WebSocket } from "ws";
import { LunoraClient, createInMemoryPersistence, defineCollections, type ConnectionStatus } from "../../src/index.js";
import type { MutatorCallResult } from "../../src/frameworks/mutator-tracker.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { startFixtureRoom } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";

/** A reactive value as an observer in the framework saw it. */
export interface Observed<T> {
  /** The latest value the observer was notified of. */
  current(): T;
  dispose(): void;
}

/** A mutator binding as an observer saw it. */
export interface ObservedMutator<TArgs extends unknown[], TResult> {
  mutate: (...args: TArgs) => TResult;
  pending: () => boolean;
  error: () => unknown;
  isError: () => boolean;
  reset: () => void;
  dispose(): void;
}

/** How a framework's test file exposes its binding to the scenarios. */
export interface FrameworkBinding {
  mutator<TArgs extends unknown[], TResult extends MutatorCallResult>(handle: (...args: TArgs) => TResult): ObservedMutator<TArgs, TResult>;
  connectionStatus(client: LunoraClient<any>, options?: { room?: string }): Observed<ConnectionStatus>;
  pendingWrites(client: LunoraClient<any>): Observed<number>;
}

export function describeFrameworkBinding(framework: string, binding: FrameworkBinding): void {
  let worker: LocalWorker;
  let persistDir: string;
  const cleanups: Array<() => unknown> = [];
  let counter = 0;
  const freshRoom = () => `${framework}-${Date.now().toString(36)}-${counter++}`;

  beforeAll(async () => {
    persistDir = await mkdtemp(path.join(tmpdir(), `lunora-${framework}-`));
    worker = await startFixtureRoom({ persist: persistDir });
  });
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  afterAll(async () => {
    await worker?.stop();
    await rm(persistDir, { recursive: true, force: true });
  });

  /** A client through a TCP proxy the test can cut, with the items table writable through the outbox. */
  async function itemsApp() {
    const room = freshRoom();
    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    const client = new LunoraClient({
      host: proxy.host,
      party: "room",
      auth: "user:alice",
      WebSocket,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
      pingIntervalMs: 0,
    });
    cleanups.push(() => client.close());
    const db = defineCollections(
      client,
      {
        items: {
          list: "items",
          shardKey: room,
          load: "eager",
          insert: {
            mutation: "items:create",
            optimistic: (input: { title: string }, id: string) => ({ id, listId: "L", title: input.title, rank: 0, secret: 0 }),
            toArgs: (row: { id: string; title: string }) => ({ id: row.id, listId: "L", title: row.title }),
          },
        },
      },
      { persistence: createInMemoryPersistence() },
    );
    cleanups.push(() => {
      db.executor.dispose();
      db.collections.items.cleanup();
    });
    await db.collections.items.toArrayWhenReady();
    return { room, proxy, client, items: db.collections.items, insertItem: db.actions.items };
  }

  function track<T extends { dispose(): void }>(value: T): T {
    cleanups.push(() => value.dispose());
    return value;
  }

  describe(`${framework}: mutator`, () => {
    test("a call is pending until the room applied the write, then settles", async () => {
      const { items, insertItem } = await itemsApp();
      const create = track(binding.mutator(insertItem));
      expect(create.pending()).toBe(false);
      const { id, transaction } = create.mutate({ title: "one" });
      expect(create.pending()).toBe(true);
      await transaction.isPersisted.promise;
      await waitFor(() => create.pending() === false, { message: "pending back to false" });
      expect(create.isError()).toBe(false);
      expect(create.error()).toBeUndefined();
      await waitFor(() => items.get(id)?.title === "one", { message: "the confirmed row" });
    });

    test("overlapping calls keep pending true until both have settled", async () => {
      const { insertItem } = await itemsApp();
      const create = track(binding.mutator(insertItem));
      const first = create.mutate({ title: "first" });
      const second = create.mutate({ title: "second" });
      let secondSettled = false;
      void second.transaction.isPersisted.promise.finally(() => {
        secondSettled = true;
      });
      // The outbox sends one write at a time, in order: the second is still
      // unconfirmed when the first has settled.
      await first.transaction.isPersisted.promise;
      expect(secondSettled).toBe(false);
      expect(create.pending()).toBe(true);
      await second.transaction.isPersisted.promise;
      await waitFor(() => create.pending() === false, { message: "pending back to false" });
      expect(create.isError()).toBe(false);
    });

    test("a write the room rejects sets error and isError; reset() clears them", async () => {
      const { items, insertItem } = await itemsApp();
      const create = track(binding.mutator(insertItem));
      // The room's items:create rejects an empty title with INVALID_ARGS.
      const { id, transaction } = create.mutate({ title: "" });
      await expect(transaction.isPersisted.promise).rejects.toMatchObject({ code: "INVALID_ARGS" });
      await waitFor(() => create.isError(), { message: "isError after the rejection" });
      expect(create.error()).toMatchObject({ code: "INVALID_ARGS" });
      expect(create.pending()).toBe(false);
      expect(items.has(id)).toBe(false); // the optimistic row was rolled back
      create.reset();
      expect(create.isError()).toBe(false);
      expect(create.error()).toBeUndefined();
    });

    test("a handle that throws synchronously sets error and rethrows", () => {
      const failure = new Error("bad args");
      const broken = track(
        binding.mutator((): MutatorCallResult => {
          throw failure;
        }),
      );
      expect(() => broken.mutate()).toThrow(failure);
      expect(broken.error()).toBe(failure);
      expect(broken.isError()).toBe(true);
      expect(broken.pending()).toBe(false);
    });
  });

  describe(`${framework}: connection status`, () => {
    test("follows a real disconnect and reconnect, for the client and for one room", async () => {
      const { room, proxy, client } = await itemsApp();
      const status = track(binding.connectionStatus(client));
      const roomStatus = track(binding.connectionStatus(client, { room }));
      const otherRoom = track(binding.connectionStatus(client, { room: `${room}-unused` }));
      await waitFor(() => status.current() === "connected" && roomStatus.current() === "connected", { message: "connected" });
      proxy.setOnline(false);
      await waitFor(() => status.current() === "offline" && roomStatus.current() === "offline", { message: "offline" });
      proxy.setOnline(true);
      await waitFor(() => status.current() === "connected" && roomStatus.current() === "connected", { message: "connected again" });
      expect(otherRoom.current()).toBe("idle");
    });
  });

  describe(`${framework}: pending writes`, () => {
    test("counts writes made offline and goes back to 0 once the room confirmed them", async () => {
      const { proxy, client, items, insertItem } = await itemsApp();
      const pending = track(binding.pendingWrites(client));
      expect(pending.current()).toBe(0);
      proxy.setOnline(false);
      await waitFor(() => client.status === "offline", { message: "offline" });
      insertItem({ title: "one" });
      insertItem({ title: "two" });
      await waitFor(() => pending.current() === 2, { message: "2 pending writes" });
      proxy.setOnline(true);
      await waitFor(() => pending.current() === 0, { message: "0 pending writes" });
      expect([...items.state.values()].map((row) => String(row.title)).sort()).toEqual(["one", "two"]);
    });
  });
}
