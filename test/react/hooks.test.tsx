// @vitest-environment jsdom
/**
 * The React hooks, rendered with React 19 in jsdom: connection status against
 * a real room that goes away and comes back, mutator state against
 * transactions the test settles by hand, sync state of a collection restored
 * from the query cache.
 */
import { act, cleanup, render, screen, waitFor as waitForDom } from "@testing-library/react";
import { createCollection } from "@tanstack/db";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { useState } from "react";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { WebSocket } from "ws";
import {
  LunoraClient,
  createInMemoryPersistence,
  createInMemoryQueryCache,
  createInMemoryQueryCacheStore,
  defineCollections,
  lunoraCollectionOptions,
} from "../../src/index.js";
import {
  LunoraProvider,
  useConnectionStatus,
  useLunoraClient,
  useMutator,
  usePendingWrites,
  useSyncState,
  type UseMutatorResult,
} from "../../src/react/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";

// jsdom puts its own realm's typed arrays on the global; esbuild (which
// bundles the fixture room) checks `new TextEncoder().encode("") instanceof
// Uint8Array` and refuses to run. Node's class is the one TextEncoder returns.
globalThis.Uint8Array = new TextEncoder().encode("").constructor as Uint8ArrayConstructor;

let worker: LocalWorker;
let persistDir: string;
const cleanups: Array<() => unknown> = [];
let counter = 0;
const freshRoom = () => `hooks-${Date.now().toString(36)}-${counter++}`;

beforeAll(async () => {
  persistDir = await mkdtemp(path.join(tmpdir(), "lunora-hooks-"));
  worker = await startFixtureRoom({ persist: persistDir });
});
afterEach(async () => {
  cleanup();
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await worker?.stop();
  await rm(persistDir, { recursive: true, force: true });
});

function newClient(host: string, options: { queryCache?: ReturnType<typeof createInMemoryQueryCache> } = {}): LunoraClient {
  const client = new LunoraClient({
    host,
    party: "room",
    auth: "user:alice",
    WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
    queryCache: options.queryCache,
  });
  cleanups.push(() => client.close());
  return client;
}

/** A transaction-like object whose `isPersisted.promise` the test settles. */
function controllable() {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { transaction: { isPersisted: { promise } }, resolve, reject };
}

describe("useConnectionStatus", () => {
  function StatusBadge({ room }: { room: string }) {
    const status = useConnectionStatus();
    const roomStatus = useConnectionStatus({ room });
    return (
      <p>
        <span data-testid="status">{status}</span>
        <span data-testid="room-status">{roomStatus}</span>
      </p>
    );
  }

  test("follows a real disconnect and reconnect of the room", async () => {
    const room = freshRoom();
    const client = newClient(worker.host);
    render(
      <LunoraProvider client={client}>
        <StatusBadge room={room} />
      </LunoraProvider>,
    );
    expect(screen.getByTestId("status").textContent).toBe("idle");
    const items = createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config);
    cleanups.push(() => items.cleanup());
    await waitForDom(() => expect(screen.getByTestId("status").textContent).toBe("connected"));
    expect(screen.getByTestId("room-status").textContent).toBe("connected");

    // The room goes away (workerd disposed) and comes back on the same port and storage.
    const port = worker.port;
    await worker.stop();
    // Both badges in one check: while the room is down its status alternates
    // offline/connecting at the (jittered) backoff's pace.
    await waitForDom(
      () => {
        expect(screen.getByTestId("status").textContent).toBe("offline");
        expect(screen.getByTestId("room-status").textContent).toBe("offline");
      },
      { timeout: 15_000 },
    );
    worker = await startAgain(port);
    await waitForDom(
      () => {
        expect(screen.getByTestId("status").textContent).toBe("connected");
        expect(screen.getByTestId("room-status").textContent).toBe("connected");
      },
      { timeout: 30_000 },
    );

    // Releasing the room's last collection makes it idle again.
    await act(async () => {
      await items.cleanup();
    });
    await waitForDom(() => expect(screen.getByTestId("room-status").textContent).toBe("idle"));
    expect(screen.getByTestId("status").textContent).toBe("idle");
  });

  async function startAgain(port: number): Promise<LocalWorker> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await startFixtureRoom({ persist: persistDir, port });
      } catch (error) {
        if (attempt >= 10) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)));
      }
    }
  }
});

describe("useMutator", () => {
  function renderMutator<TArgs extends unknown[]>(handle: (...args: TArgs) => { isPersisted: { promise: Promise<unknown> } } | { transaction: { isPersisted: { promise: Promise<unknown> } } }) {
    const latest: { current?: UseMutatorResult<TArgs, any> } = {};
    function Probe() {
      const result = useMutator(handle);
      latest.current = result;
      return <span data-testid="pending">{String(result.pending)}</span>;
    }
    render(<Probe />);
    return latest as { current: UseMutatorResult<TArgs, any> };
  }

  test("pending stays true until every overlapping call has settled", async () => {
    const calls: Array<ReturnType<typeof controllable>> = [];
    const hook = renderMutator((_text: string) => {
      const call = controllable();
      calls.push(call);
      return call.transaction;
    });
    expect(hook.current.pending).toBe(false);
    act(() => {
      hook.current.mutate("one");
      hook.current.mutate("two");
    });
    expect(hook.current.pending).toBe(true);

    await act(async () => calls[0].resolve());
    expect(hook.current.pending).toBe(true); // "two" is still in flight
    act(() => void hook.current.mutate("three"));
    await act(async () => calls[1].resolve());
    expect(hook.current.pending).toBe(true); // "three" is still in flight
    await act(async () => calls[2].resolve());
    expect(hook.current.pending).toBe(false);
    expect(hook.current.isError).toBe(false);
  });

  test("a failed write surfaces in error (also while another call is pending); reset clears it", async () => {
    const calls: Array<ReturnType<typeof controllable>> = [];
    const hook = renderMutator((_id: number) => {
      const call = controllable();
      calls.push(call);
      return { transaction: call.transaction }; // the shape of a table action's result
    });
    act(() => {
      hook.current.mutate(1);
      hook.current.mutate(2);
    });
    const rejection = Object.assign(new Error("item is locked"), { code: "CONFLICT" });
    await act(async () => calls[0].reject(rejection));
    expect(hook.current.error).toBe(rejection);
    expect(hook.current.isError).toBe(true);
    expect(hook.current.pending).toBe(true);
    await act(async () => calls[1].resolve());
    expect(hook.current.pending).toBe(false);
    expect(hook.current.error).toBe(rejection); // a later success does not hide it
    act(() => hook.current.reset());
    expect(hook.current.error).toBeUndefined();
    expect(hook.current.isError).toBe(false);
  });

  test("a handle that throws synchronously sets error and rethrows", () => {
    const failure = new Error("bad args");
    const hook = renderMutator((): never => {
      throw failure;
    });
    act(() => {
      expect(() => hook.current.mutate()).toThrow(failure);
    });
    expect(hook.current.error).toBe(failure);
    expect(hook.current.pending).toBe(false);
  });
});

describe("usePendingWrites", () => {
  test("follows the client's pending-write count", async () => {
    // The outbox reports its queue length through `client.reportPendingWrites`;
    // this drives that entry point of a real client directly.
    const client = newClient(worker.host);
    function Badge() {
      return <span data-testid="pending-writes">{usePendingWrites()}</span>;
    }
    render(
      <LunoraProvider client={client}>
        <Badge />
      </LunoraProvider>,
    );
    expect(screen.getByTestId("pending-writes").textContent).toBe("0");
    act(() => client.reportPendingWrites(3));
    expect(screen.getByTestId("pending-writes").textContent).toBe("3");
    act(() => client.reportPendingWrites(0));
    expect(screen.getByTestId("pending-writes").textContent).toBe("0");
  });

  test("is 0 on a client-like object without the write path", () => {
    function Badge() {
      return <span data-testid="pending-writes">{usePendingWrites()}</span>;
    }
    render(
      <LunoraProvider client={{ party: "room" } as unknown as LunoraClient}>
        <Badge />
      </LunoraProvider>,
    );
    expect(screen.getByTestId("pending-writes").textContent).toBe("0");
  });

  test("follows real offline writes through the outbox: 2 while offline, 0 once the room confirmed them", async () => {
    const room = freshRoom();
    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    const client = newClient(proxy.host, {});
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
    function Badge() {
      return <span data-testid="pending-writes">{usePendingWrites()}</span>;
    }
    render(
      <LunoraProvider client={client}>
        <Badge />
      </LunoraProvider>,
    );
    proxy.setOnline(false);
    await waitFor(() => client.status === "offline");
    act(() => {
      db.actions.items({ title: "one" });
      db.actions.items({ title: "two" });
    });
    await waitForDom(() => expect(screen.getByTestId("pending-writes").textContent).toBe("2"));
    proxy.setOnline(true);
    await waitForDom(() => expect(screen.getByTestId("pending-writes").textContent).toBe("0"), { timeout: 15_000 });
    expect([...db.collections.items.state.values()].map((row) => String(row.title)).sort()).toEqual(["one", "two"]);
  });
});

describe("useSyncState", () => {
  test("shows rows restored from the cache as not authoritative until the room's first poke", async () => {
    const room = freshRoom();
    await putItems(worker, room, [{ id: "s1", listId: "s", title: "one" }]);
    const store = createInMemoryQueryCacheStore();
    const firstCache = createInMemoryQueryCache({ store });
    const first = newClient(worker.host, { queryCache: firstCache });
    const list1 = createCollection(lunoraCollectionOptions({ client: first, list: "items", shardKey: room, load: "eager" }).config);
    await waitFor(() => list1.has("s1"));
    await list1.cleanup();
    first.close();
    await firstCache.close();

    const proxy = await TcpProxy.start(worker.port);
    cleanups.push(() => proxy.stop());
    proxy.setOnline(false);
    const client = newClient(proxy.host, { queryCache: createInMemoryQueryCache({ store }) });
    const items = createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room, load: "eager" }).config);
    cleanups.push(() => items.cleanup());
    function Syncing() {
      const { isAuthoritative, lastSyncedAt } = useSyncState(items);
      const [rendered] = useState(() => Date.now());
      return (
        <span data-testid="sync">
          {isAuthoritative ? "live" : "syncing"}:{lastSyncedAt !== undefined && lastSyncedAt <= rendered ? "cached" : "none"}
        </span>
      );
    }
    render(
      <LunoraProvider client={client}>
        <Syncing />
      </LunoraProvider>,
    );
    await waitForDom(() => expect(screen.getByTestId("sync").textContent).toBe("syncing:cached"));
    expect(items.has("s1")).toBe(true);
    proxy.setOnline(true);
    await waitForDom(() => expect(screen.getByTestId("sync").textContent?.startsWith("live")).toBe(true), { timeout: 15_000 });
  });
});

test("useLunoraClient outside a provider fails with a coded error", () => {
  function Orphan() {
    useLunoraClient();
    return null;
  }
  const quiet = console.error;
  console.error = () => undefined; // React logs the error it rethrows
  try {
    expect(() => render(<Orphan />)).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
  } finally {
    console.error = quiet;
  }
});
