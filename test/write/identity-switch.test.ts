/**
 * After an identity switch (refreshAuth, or a token the client notices on a
 * reconnect) every room connection of the new identity must subscribe,
 * resume or reset, and drain its writes — whatever was in flight at the
 * switch. Each test here is a cause the seeded simulator found (issue 15,
 * issue 11 §2), replayed deterministically against the fixture room in real
 * workerd over loopback.
 */
import { randomUUID } from "node:crypto";
import type { LeaderElection } from "@tanstack/offline-transactions";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { bindMutators, defineMutator } from "../../src/mutators/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { roomCall, serverItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";
import { freshIndexedDb, freshRoom, onCleanup, openSession, writeInEarlierSession } from "./helpers.js";

let worker: LocalWorker;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

/**
 * A token provider for alice, then (once `token` is set to bob's) bob, that
 * holds the outbox's first read of bob's token — its identity check, found
 * by its caller — until `release()`: the interleaving simulator seed 7341163
 * hit under load, forced without timing.
 */
function tokenHoldingTheCheck() {
  const held = {
    token: "user:alice",
    release: undefined as (() => void) | undefined,
    auth: (): string | Promise<string> => {
      const current = held.token;
      if (current !== "user:bob" || held.release !== undefined || !new Error().stack?.includes("checkIdentity")) return current;
      return new Promise<string>((resolve) => (held.release = () => resolve(current)));
    },
  };
  return held;
}

describe("writes after an identity switch", () => {
  // Simulator seeds 7341022, 7341074, 7341146, … : the dropped write was
  // still in the outbox's assignment queue and took clientSeq 1 of the new
  // identity's writer; the room then answered OUT_OF_ORDER (expected 1) to
  // every later write, and the gap filler skipped seq 1 as "known".
  test("a write dropped by the switch before it was queued takes no clientSeq: the new identity's next write is clientSeq 1 and applies", async () => {
    const room = freshRoom("idw");
    let token = "user:alice";
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: () => token });
    // In the page's first moments, before the outbox has started.
    const alices = session.db.actions.items({ listId: "L", title: "alice's" });
    token = "user:bob";
    await session.client.refreshAuth();
    await expect(alices.transaction.isPersisted.promise).rejects.toMatchObject({ code: "IDENTITY_CHANGED" });

    const bobs = session.db.actions.items({ listId: "L", title: "bob's" });
    await waitFor(() => bobs.transaction.state === "completed", { message: "bob's write settles", timeoutMs: 10_000 });
    expect((await serverItems(worker, room)).map((item) => item.title)).toEqual(["bob's"]);
    const pushed = session.log.pushes().flatMap((push) => push.mutations.map((mutation) => [mutation.clientSeq, mutation.args?.title]));
    expect(pushed).toEqual([[1, "bob's"]]);
    expect(session.rejected.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", alices.id]]);
    await waitFor(() => session.client.pendingWrites === 0, { message: "nothing pending" });
  });

  // The outbox re-reads the token before each send. A switch announced while
  // such a check was reading the old token was answered with that check:
  // refreshAuth() resolved with the outbox still on the old identity, and the
  // next write was assigned the old identity's writer — then dropped as
  // IDENTITY_CHANGED although it was made after the switch.
  test("a switch announced while the outbox is re-reading the token is not lost: the next write goes out under the new identity", async () => {
    const room = freshRoom("idw");
    let token = "user:alice";
    let holdNextRead = false;
    let releaseHeldRead: (() => void) | undefined;
    const auth = (): string | Promise<string> => {
      const current = token;
      if (!holdNextRead) return current;
      holdNextRead = false;
      return new Promise<string>((resolve) => (releaseHeldRead = () => resolve(current)));
    };
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: auth });
    await session.db.actions.items({ listId: "L", title: "alice's first" }).transaction.isPersisted.promise;

    // Alice writes; the outbox's pre-send token read is held (it reads alice's token).
    holdNextRead = true;
    const alices = session.db.actions.items({ listId: "L", title: "alice's second" });
    await waitFor(() => releaseHeldRead !== undefined, { message: "the outbox is reading the token" });
    token = "user:bob";
    const switching = session.client.refreshAuth();
    await waitFor(() => session.client.identityGeneration === 1, { message: "the switch is announced" });
    releaseHeldRead!();
    await switching;

    const bobs = session.db.actions.items({ listId: "L", title: "bob's" });
    await expect(bobs.transaction.isPersisted.promise).resolves.toBeDefined();
    expect(session.rejected.map((event) => event.row?.id)).not.toContain(bobs.id);
    const titles = (await serverItems(worker, room)).map((item) => item.title).sort();
    expect(titles).toContain("bob's");
    // alice's second write was made before the switch: sent as alice, or dropped and reported — never lost silently.
    const alicesSettled = await alices.transaction.isPersisted.promise.then(
      () => "applied",
      (error: { code?: string }) => error.code,
    );
    expect(alicesSettled === "applied" ? titles.includes("alice's second") : alicesSettled === "IDENTITY_CHANGED").toBe(true);
    await waitFor(() => session.client.pendingWrites === 0, { message: "nothing pending" });
  });

  // Simulator seed 8200347: a write restored after a reload (its rows are an
  // overlay the executor holds, not a live transaction) was in flight when the
  // app switched accounts. refreshAuth() waited only for live transactions to
  // roll back, so it resolved while the old identity's row was still shown.
  test("a restored write in flight at the switch is rolled back before refreshAuth() resolves", async () => {
    const room = freshRoom("idw");
    const persistence = freshIndexedDb();
    // Bob has written on this device before: switching to him finds his writer in storage at once.
    await writeInEarlierSession({ host: worker.host, room, persistence, token: "user:bob" }, "bob's first");
    const proxy = await TcpProxy.start(worker.port);
    proxy.setOnline(false);
    onCleanup(() => proxy.stop());
    let token = "user:alice";
    const first = openSession({ host: proxy.host, room, persistence, token: () => token });
    const alices = first.db.actions.items({ listId: "L", title: "alice's, queued offline" });
    await first.db.executor.whenStored();
    first.close();

    const second = openSession({ host: proxy.host, room, persistence, token: () => token });
    await waitFor(() => second.items.has(alices.id), { message: "alice's write restored after the reload" });
    token = "user:bob";
    await second.client.refreshAuth();
    expect(second.items.has(alices.id)).toBe(false);
    expect(second.rejected.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", alices.id]]);

    proxy.setOnline(true);
    const bobs = second.db.actions.items({ listId: "L", title: "bob's" });
    await bobs.transaction.isPersisted.promise;
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["bob's", "bob's first"]);
  });

  // A write the outbox sends from memory (a follower tab, or storage that
  // failed) sleeps between transient failures (1 s, 2 s, 4 s …). The drop
  // did not end that sleep, and refreshAuth() waits at most 2 s for the old
  // identity's rows to roll back: it resolved with them still on screen.
  test("a write retried from memory and dropped by the switch rolls back before refreshAuth() resolves, without waiting out its backoff", async () => {
    const room = freshRoom("idw");
    let token = "user:alice";
    const follower: LeaderElection = {
      requestLeadership: async () => false,
      releaseLeadership: () => undefined,
      isLeader: () => false,
      onLeadershipChange: () => () => undefined,
    };
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: () => token, leaderElection: follower });
    const mutate = bindMutators(
      session.client,
      { collections: session.db.collections },
      {
        flaky: defineMutator<{ id: string; listId: string; title: string }>({
          serverRef: "items:flaky",
          room,
          apply: ({ collections }, args) => {
            collections.items.insert({ ...args, rank: 0 });
          },
        }),
      },
    );
    await session.items.toArrayWhenReady();
    await roomCall(worker, room, "/faults", { flaky: true });
    onCleanup(() => roomCall(worker, room, "/faults", { flaky: false }));

    const id = randomUUID();
    const alices = mutate.flaky({ id, listId: "L", title: "alice's, failing" });
    alices.isPersisted.promise.catch(() => undefined);
    // After three transient failures the write waits 4 s before its next attempt.
    const failures = () => session.log.frames.filter((frame) => frame.includes('"status":"error"')).length;
    await waitFor(() => failures() >= 3, { message: "three transient failures", timeoutMs: 10_000 });
    expect(session.items.has(id)).toBe(true);

    token = "user:bob";
    await session.client.refreshAuth();
    expect(session.items.has(id)).toBe(false);
    await expect(alices.isPersisted.promise).rejects.toMatchObject({ code: "IDENTITY_CHANGED" });
    expect(session.rejected.map((event) => event.code)).toEqual(["IDENTITY_CHANGED"]);
  });

  // Simulator seed 8200480: the switch came while the outbox was still
  // starting. Its start read the identity before the switch and finished
  // after it, so the outbox stayed on the old identity: the next write, made
  // after refreshAuth() resolved, was stamped with the old identity's writer
  // and then dropped as IDENTITY_CHANGED.
  test("a switch while the outbox is starting: the first write after refreshAuth() goes out under the new identity", async () => {
    const room = freshRoom("idw");
    let token = "user:alice";
    let releaseStartRead: (() => void) | undefined;
    const auth = (): string | Promise<string> => {
      const current = token;
      // Hold the token read of the outbox's start (only that one: found by its caller).
      if (releaseStartRead !== undefined || !new Error().stack?.includes("readIdentityPatiently")) return current;
      return new Promise<string>((resolve) => (releaseStartRead = () => resolve(current)));
    };
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: auth });
    await waitFor(() => releaseStartRead !== undefined, { message: "the outbox's start is reading alice's token" });
    token = "user:bob";
    await session.client.refreshAuth();
    releaseStartRead!();
    await session.db.executor.waitForInit();
    await waitFor(() => session.db.executor.isLeader, { message: "the outbox runs the durable queue" });

    const bobs = session.db.actions.items({ listId: "L", title: "bob's" });
    await expect(bobs.transaction.isPersisted.promise).resolves.toBeDefined();
    expect(session.rejected).toEqual([]);
    expect((await serverItems(worker, room)).map((item) => item.title)).toEqual(["bob's"]);
  });

  // Simulator seed 7341163 (under CPU load): a reconnect attempt read the new
  // token first and announced the switch on its own (nobody waits for that
  // announcement). refreshAuth() then found the identity already noted and
  // resolved at once, while the outbox was still reading the token: the old
  // identity's queued write stayed on screen after refreshAuth() resolved.
  test("a switch a reconnect noticed first: refreshAuth() still resolves only once the old identity's queued write is rolled back", async () => {
    const room = freshRoom("idw");
    const proxy = await TcpProxy.start(worker.port);
    onCleanup(() => proxy.stop());
    const held = tokenHoldingTheCheck();
    const auth = held.auth;
    const session = openSession({ host: proxy.host, room, persistence: freshIndexedDb(), token: auth });
    await session.db.actions.items({ listId: "L", title: "alice's first" }).transaction.isPersisted.promise;
    proxy.setOnline(false);
    const alices = session.db.actions.items({ listId: "L", title: "alice's, queued offline" });
    await session.db.executor.whenStored();
    expect(session.items.has(alices.id)).toBe(true);

    // The socket's next connection attempt reads bob's token and announces the switch; the outbox's check is held.
    held.token = "user:bob";
    await waitFor(() => session.client.identityGeneration === 1 && held.release !== undefined, { message: "a reconnect announced the switch" });
    // refreshAuth() reads the token too; the outbox's check goes on only once that read is done.
    const identity = session.client.identity.bind(session.client);
    session.client.identity = async () => {
      const ofRefreshAuth = new Error().stack?.includes("refreshAuth") ?? false;
      const read = await identity();
      if (ofRefreshAuth) held.release!();
      return read;
    };
    await session.client.refreshAuth();
    expect(session.items.has(alices.id)).toBe(false);
    await expect(alices.transaction.isPersisted.promise).rejects.toMatchObject({ code: "IDENTITY_CHANGED" });

    proxy.setOnline(true);
    const bobs = session.db.actions.items({ listId: "L", title: "bob's" });
    await expect(bobs.transaction.isPersisted.promise).resolves.toBeDefined();
    expect(session.rejected.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", alices.id]]);
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["alice's first", "bob's"]);
  });

  // The same seed's other half: a write made after the client noticed the
  // switch (a reconnect read the new token) but before the outbox had read
  // the new identity took the old identity's writer, and the outbox then
  // dropped it as IDENTITY_CHANGED, though it was the new user's write.
  test("a write made after a reconnect noticed a switch, while the outbox is still reading the new identity, goes out under the new identity", async () => {
    const room = freshRoom("idw");
    const held = tokenHoldingTheCheck();
    const auth = held.auth;
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: auth });
    await session.db.actions.items({ listId: "L", title: "alice's" }).transaction.isPersisted.promise;

    // No refreshAuth(): the app changed its token, and the socket's reconnect notices it.
    held.token = "user:bob";
    session.client.reconnectRoom(room);
    await waitFor(() => session.client.identityGeneration === 1 && held.release !== undefined, { message: "the reconnect announced the switch" });
    const bobs = session.db.actions.items({ listId: "L", title: "bob's" });
    // Everything the write does before it needs the network runs now.
    await new Promise((resolve) => setImmediate(resolve));
    held.release!();

    await expect(bobs.transaction.isPersisted.promise).resolves.toBeDefined();
    expect(session.rejected).toEqual([]);
    expect((await serverItems(worker, room)).map((item) => item.title).sort()).toEqual(["alice's", "bob's"]);
    await waitFor(() => session.client.pendingWrites === 0, { message: "nothing pending" });
  });

  // Fresh simulator seed 9160047: reloads in quick succession after a switch.
  // A page closed while its outbox was still starting went on (the library's
  // start continues after dispose) to load the old identity's records and
  // report them IDENTITY_CHANGED; the next page found them still stored and
  // reported them again.
  test("a page closed while its outbox is starting reports nothing: the next page reports each write of the old identity once", async () => {
    const room = freshRoom("idw");
    const persistence = freshIndexedDb();
    const proxy = await TcpProxy.start(worker.port);
    proxy.setOnline(false);
    onCleanup(() => proxy.stop());
    const first = openSession({ host: proxy.host, room, persistence, token: "user:alice" });
    const alices = first.db.actions.items({ listId: "L", title: "alice's, queued offline" });
    alices.transaction.isPersisted.promise.catch(() => undefined);
    await first.db.executor.whenStored();
    first.close();

    // Bob's first page: its outbox asks for leadership, and is closed before it gets it.
    let grant: ((isLeader: boolean) => void) | undefined;
    const heldElection: LeaderElection = {
      requestLeadership: () => new Promise<boolean>((resolve) => (grant = resolve)),
      releaseLeadership: () => undefined,
      isLeader: () => false,
      onLeadershipChange: () => () => undefined,
    };
    const closedEarly = openSession({ host: proxy.host, room, persistence, token: "user:bob", leaderElection: heldElection });
    await waitFor(() => grant !== undefined, { message: "the outbox asks for leadership" });
    closedEarly.close();
    grant!(true);
    await waitFor(() => closedEarly.db.executor.offlineExecutor?.isOfflineEnabled === true, { message: "the closed page's executor finished starting" });
    await closedEarly.db.executor.offlineExecutor!.waitForInit();
    expect(closedEarly.rejected).toEqual([]);

    const second = openSession({ host: proxy.host, room, persistence, token: "user:bob" });
    await second.db.executor.waitForInit();
    await waitFor(() => second.rejected.length > 0, { message: "the old identity's write is reported" });
    expect(second.rejected.map((event) => [event.code, event.row?.id])).toEqual([["IDENTITY_CHANGED", alices.id]]);
    expect(second.items.has(alices.id)).toBe(false);
  });
});
