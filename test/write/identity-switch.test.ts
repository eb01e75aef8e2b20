/**
 * After an identity switch (refreshAuth, or a token the client notices on a
 * reconnect) every room connection of the new identity must subscribe,
 * resume or reset, and drain its writes — whatever was in flight at the
 * switch. Each test here is a cause the seeded simulator found (issue 15,
 * issue 11 §2), replayed deterministically against the fixture room in real
 * workerd over loopback.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { LocalWorker } from "../../src/testing/index.js";
import { serverItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";
import { freshIndexedDb, freshRoom, openSession } from "./helpers.js";

let worker: LocalWorker;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

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
});
