/**
 * The room a `defineCollections` action writes an inserted row to — where
 * the collection reads it from: a `shardKey` (a function is given the
 * shape's args under the row's values), else the row's `scopeBy` column,
 * else the default room. Against the fixture room in real workerd.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { WebSocket } from "ws";
import { LunoraClient, LunoraError, defineCollections } from "../../src/index.js";
import { DEFAULT_ROOM } from "../../src/collections/lunora-collection-options.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { serverItems, startFixtureRoom } from "../helpers/fixture-room.js";
import { freshIndexedDb, freshRoom, onCleanup, type Item } from "./helpers.js";

let worker: LocalWorker;

beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

const insert = {
  mutation: "items:create",
  // A row written without a list has no `listId` column (the shape's args may name its room).
  optimistic: (input: { listId?: string; title: string }, id: string) => ({ id, ...(input.listId !== undefined ? { listId: input.listId } : {}), title: input.title, rank: 0 }),
  toArgs: (row: Partial<Item>) => ({ id: row.id, listId: row.listId ?? "none", title: row.title, rank: row.rank }),
};

/** An `items` collection defined with `placement` (its room choice), its client and actions. */
function itemsWith(placement: { shardKey?: string | ((args: any) => string); scopeBy?: string }, shapeArgs?: { listId: string }) {
  const client = new LunoraClient({
    host: worker.host,
    party: "room",
    auth: "user:alice",
    WebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
  });
  const db = defineCollections(
    client,
    { items: { shape: { name: "itemsByList", ...(shapeArgs ? { args: shapeArgs } : {}) }, load: "eager", ...placement, insert } } as never,
    { persistence: freshIndexedDb() },
  ) as any;
  onCleanup(() => {
    db.executor.dispose();
    db.collections.items.cleanup();
    client.close();
  });
  return db as { actions: { items: (input: { listId?: string; title: string }) => { id: string; transaction: { isPersisted: { promise: Promise<unknown> } } } } };
}

const idsIn = async (room: string) => (await serverItems(worker, room)).map((item) => item.id);

describe("defineCollections actions: the room of an inserted row", () => {
  test("scopeBy: the row's scopeBy value names the room", async () => {
    const room = freshRoom("scoped");
    const db = itemsWith({ scopeBy: "listId" });
    const { id, transaction } = db.actions.items({ listId: room, title: "scoped" });
    await transaction.isPersisted.promise;
    expect(await idsIn(room)).toEqual([id]);
  });

  test("scopeBy: a row without the scopeBy value is INVALID_ARGS, thrown at the call; nothing is written", async () => {
    const db = itemsWith({ scopeBy: "listId" });
    let thrown: unknown;
    try {
      db.actions.items({ title: "no list" });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(LunoraError);
    expect((thrown as LunoraError).code).toBe("INVALID_ARGS");
    expect((thrown as LunoraError).message).toContain("listId");
    // Nothing reached the default room either.
    expect((await serverItems(worker, DEFAULT_ROOM)).filter((item) => item.title === "no list")).toEqual([]);
  });

  test("a shardKey function is given the shape's args under the row's values", async () => {
    const prefix = freshRoom("sharded");
    const seen: unknown[] = [];
    const db = itemsWith(
      {
        shardKey: (args: { listId: string; title?: string }) => {
          seen.push({ ...args });
          return `${prefix}-${args.listId}`;
        },
      },
      { listId: "fromShape" },
    );
    const { id, transaction } = db.actions.items({ listId: "fromRow", title: "sharded" });
    await transaction.isPersisted.promise;
    // The row's listId overrides the shape's: the write goes to the row's room.
    expect(await idsIn(`${prefix}-fromRow`)).toEqual([id]);
    expect(await idsIn(`${prefix}-fromShape`)).toEqual([]);
    expect(seen).toContainEqual({ listId: "fromRow", id, title: "sharded", rank: 0 });
    // A row without the column: the shape's value names the room.
    const second = db.actions.items({ title: "no list" });
    await second.transaction.isPersisted.promise;
    expect(await idsIn(`${prefix}-fromShape`)).toEqual([second.id]);
    expect(seen).toContainEqual({ listId: "fromShape", id: second.id, title: "no list", rank: 0 });
  });

  test("a shardKey string names the room", async () => {
    const room = freshRoom("fixed");
    const db = itemsWith({ shardKey: room }, { listId: "L" });
    const { id, transaction } = db.actions.items({ listId: "L", title: "fixed" });
    await transaction.isPersisted.promise;
    expect(await idsIn(room)).toEqual([id]);
  });

  test("neither shardKey nor scopeBy: the default room", async () => {
    const db = itemsWith({}, { listId: "L" });
    const { id, transaction } = db.actions.items({ listId: "L", title: "default" });
    await transaction.isPersisted.promise;
    expect(await idsIn(DEFAULT_ROOM)).toContain(id);
  });
});
