/**
 * Server mutators at the protocol level: exactly once per
 * (identity, clientId, clientSeq), outcomes carried in the poke with the rows
 * they produced, coded rejections recorded, transient failures retried.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import type { Mutation } from "../../src/protocol/index.js";
import type { AssembledPoke, RawSocket } from "../helpers/raw-socket.js";
import { roomCall, serverItems } from "../helpers/fixture-room.js";
import { useRawFixtureRoom } from "../helpers/raw-fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

const fixture = useRawFixtureRoom("push");
const { freshRoom, connect } = fixture;

/** Sends a push and waits for the poke that carries its outcomes. */
async function push(socket: RawSocket, clientId: string, mutations: Mutation[]): Promise<AssembledPoke> {
  const seen = socket.pokes.length;
  socket.send({ type: "push", clientId, mutations });
  return waitFor(() => socket.pokes.slice(seen).find((poke) => poke.mutations?.some((m) => m.clientSeq === mutations[0].clientSeq)), {
    message: "outcomes of the push",
  });
}

const create = (clientSeq: number, id: string, title = "t", listId = "L"): Mutation => ({ clientSeq, name: "items:create", args: { id, listId, title } });

describe("exactly once", () => {
  test("a replayed write is answered from its stored outcome and not run again", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    await roomCall(fixture.worker, room, "/items/put", { id: "b", listId: "L", title: "bump me" });
    const first = await push(socket, clientId, [{ clientSeq: 1, name: "items:bump", args: { id: "b" } }]);
    expect(first.mutations).toEqual([{ clientSeq: 1, status: "applied" }]);
    // The same write again, as after a lost acknowledgement, on a new socket.
    const again = await connect(room);
    const replay = await push(again, clientId, [{ clientSeq: 1, name: "items:bump", args: { id: "b" } }]);
    expect(replay.mutations).toEqual([{ clientSeq: 1, status: "applied" }]);
    expect(await roomCall(fixture.worker, room, "/bumps")).toEqual([`bump:${clientId}:1`]);
    expect((await serverItems(fixture.worker, room)).find((item) => item.id === "b")!.rank).toBe(1);
  });

  test("a batch is applied in order; a gap is OUT_OF_ORDER with the expected seq and nothing after it runs", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const poke = await push(socket, clientId, [create(1, ids[0]), create(2, ids[1])]);
    expect(poke.mutations!.map((m) => m.status)).toEqual(["applied", "applied"]);
    const gap = await push(socket, clientId, [create(4, ids[2])]);
    expect(gap.mutations).toEqual([{ clientSeq: 4, status: "error", error: { code: "OUT_OF_ORDER", message: "expected clientSeq 3", data: { expected: 3 } } }]);
    expect((await serverItems(fixture.worker, room)).map((item) => item.id).sort()).toEqual([ids[0], ids[1]].sort());
  });

  test("identity B using A's clientId cannot move A's watermark or read A's outcomes", async () => {
    const room = freshRoom();
    const alice = await connect(room, "user:alice");
    const mallory = await connect(room, "user:mallory");
    const clientId = randomUUID();
    const aliceId = randomUUID();
    const rejected = await push(alice, clientId, [create(1, aliceId, "")]);
    expect(rejected.mutations![0]).toMatchObject({ status: "rejected", error: { code: "INVALID_ARGS" } });
    // Mallory's seq 1 under the same clientId is a new write of hers, not a replay of Alice's.
    const malloryId = randomUUID();
    const forged = await push(mallory, clientId, [create(1, malloryId, "mine")]);
    expect(forged.mutations).toEqual([{ clientSeq: 1, status: "applied", result: malloryId }]);
    // Alice's watermark is untouched: her seq 2 runs, seq 1 still answers with her own outcome.
    const next = await push(alice, clientId, [create(1, aliceId, ""), create(2, randomUUID(), "two")]);
    expect(next.mutations!.map((m) => m.status)).toEqual(["rejected", "applied"]);
  });

  test("a coded rejection rolls back the body, is recorded, and advances the watermark", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    await roomCall(fixture.worker, room, "/items/put", { id: "lk", listId: "L", title: "locked item" });
    const clientId = randomUUID();
    const poke = await push(socket, clientId, [{ clientSeq: 1, name: "items:rename", args: { id: "lk", title: "mine now" } }, create(2, randomUUID(), "after")]);
    expect(poke.mutations).toEqual([
      { clientSeq: 1, status: "rejected", error: { code: "CONFLICT", message: "item is locked", data: { id: "lk" } } },
      expect.objectContaining({ clientSeq: 2, status: "applied" }),
    ]);
    expect((await serverItems(fixture.worker, room)).find((item) => item.id === "lk")!.title).toBe("locked item");
  });

  test("an uncoded exception commits nothing and leaves the watermark, so the retry runs", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    const id = randomUUID();
    await roomCall(fixture.worker, room, "/faults", { flaky: true });
    try {
      const failed = await push(socket, clientId, [{ clientSeq: 1, name: "items:flaky", args: { id, listId: "L", title: "x" } }, create(2, randomUUID())]);
      expect(failed.mutations!.map((m) => [m.status, "error" in m ? m.error.code : null])).toEqual([
        ["error", "INTERNAL"],
        ["error", "INTERNAL"],
      ]);
      expect(await serverItems(fixture.worker, room)).toEqual([]);
    } finally {
      await roomCall(fixture.worker, room, "/faults", { flaky: false });
    }
    const retried = await push(socket, clientId, [{ clientSeq: 1, name: "items:flaky", args: { id, listId: "L", title: "x" } }]);
    expect(retried.mutations).toEqual([{ clientSeq: 1, status: "applied" }]);
    expect((await serverItems(fixture.worker, room)).map((item) => item.id)).toEqual([id]);
  });

  test("unknown mutators and invalid args are permanent rejections", async () => {
    const socket = await connect(freshRoom());
    const poke = await push(socket, randomUUID(), [
      { clientSeq: 1, name: "nope", args: {} },
      { clientSeq: 2, name: "items:create", args: { id: 5 } },
      { clientSeq: 3, name: "__proto__", args: {} },
      create(4, "not-a-uuid"),
    ]);
    expect(poke.mutations!.map((m) => [m.status, "error" in m ? m.error.code : null])).toEqual([
      ["rejected", "UNKNOWN_MUTATOR"],
      ["rejected", "INVALID_ARGS"],
      ["rejected", "UNKNOWN_MUTATOR"],
      ["rejected", "INVALID_ARGS"],
    ]);
  });
});

describe("confirmation travels with the data", () => {
  test("the outcome arrives in the same poke as the rows the mutation produced", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("s", { shape: "itemsByList", args: { listId: "L" } });
    await socket.nextPoke("s");
    const id = randomUUID();
    const poke = await push(socket, randomUUID(), [create(1, id, "hello")]);
    expect(poke.mutations).toEqual([{ clientSeq: 1, status: "applied", result: id }]);
    expect(poke.ops).toEqual([{ op: "put", sub: "s", key: id, row: { id, listId: "L", title: "hello", rank: 0 } }]);
  });

  test("a write that no subscription of its client sees is still acknowledged", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("s", { shape: "itemsByList", args: { listId: "elsewhere" } });
    await socket.nextPoke("s");
    const poke = await push(socket, randomUUID(), [{ clientSeq: 1, name: "notes:add", args: { id: randomUUID(), body: "private" } }]);
    expect(poke.mutations![0].status).toBe("applied");
    expect(poke.ops).toEqual([]);
  });

  test("other subscribers receive the rows; only the writer receives the outcomes", async () => {
    const room = freshRoom();
    const writer = await connect(room);
    const reader = await connect(room, "user:bob");
    reader.subscribe("s", { list: "items" });
    await reader.nextPoke("s");
    const seen = reader.pokes.length;
    const id = randomUUID();
    await push(writer, randomUUID(), [create(1, id)]);
    const poke = await reader.nextPoke("s", seen);
    expect(poke.ops.map((op) => op.key)).toEqual([id]);
    expect(poke.mutations).toBeUndefined();
  });

  test("a client-proposed id that exists already is CONFLICT: no client can overwrite a peer's row", async () => {
    const room = freshRoom();
    const alice = await connect(room);
    const mallory = await connect(room, "user:mallory");
    const id = randomUUID();
    await push(alice, randomUUID(), [create(1, id, "alice's")]);
    const poke = await push(mallory, randomUUID(), [create(1, id, "mallory's")]);
    expect(poke.mutations![0]).toMatchObject({ status: "rejected", error: { code: "CONFLICT" } });
    expect((await serverItems(fixture.worker, room)).find((item) => item.id === id)!.title).toBe("alice's");
  });
});
