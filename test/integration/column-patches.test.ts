/**
 * Protocol 4 sends an update of a row that stays in a shape as a column
 * patch. These tests drive real clients against the fixture room in real
 * workerd over loopback: the patch must carry only the changed columns, be
 * merged into the row the client holds, and concurrent writers of
 * different columns of one row must both survive — live, and across an
 * offline window whose resume coalesces several writes of the row.
 */
import type { Collection } from "@tanstack/db";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { LunoraClient } from "../../src/index.js";
import { bindMutators } from "../../src/mutators/index.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, serverItems, startFixtureRoom, updateItem } from "../helpers/fixture-room.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait-for.js";
import { freshIndexedDb, freshRoom, itemMutators, onCleanup, openSession, rowsOf, type Item } from "../write/helpers.js";

let worker: LocalWorker;
beforeAll(async () => {
  worker = await startFixtureRoom();
});
afterAll(() => worker?.stop());

/** `items:rename` (patches `title`) and `items:bump` (raw `UPDATE … rank = rank + 1`) as optimistic custom mutators. */
function columnMutators(client: LunoraClient, items: Collection<Item, string>, room: string) {
  return bindMutators(client, { collections: { items } }, itemMutators(room));
}

/** The op blocks of every poke frame a session received (protocol 4: `[group, kind, ...items]`). */
function receivedBlocks(frames: string[]): Array<[string, string, ...unknown[]]> {
  const blocks: Array<[string, string, ...unknown[]]> = [];
  for (const text of frames) {
    const frame = JSON.parse(text) as { type: string; ops?: Array<[string, string, ...unknown[]]> };
    if (frame.type === "poke" || frame.type === "pokePart") blocks.push(...(frame.ops ?? []));
  }
  return blocks;
}

const settled = (items: Collection<Item, string>, id: string, expected: Partial<Item>) => {
  const row = rowsOf(items).get(id);
  return row !== undefined && Object.entries(expected).every(([column, value]) => (row as Record<string, unknown>)[column] === value);
};

describe("column patches", () => {
  test("an update of one column reaches a subscriber as a patch of that column, merged into the row it holds", async () => {
    const room = freshRoom("patch");
    await putItems(worker, room, { id: "p1", listId: "L", title: "first", rank: 5 });
    const session = openSession({ host: worker.host, room, persistence: freshIndexedDb() });
    await waitFor(() => settled(session.items, "p1", { title: "first", rank: 5 }), { message: "row synced" });
    const before = session.log.frames.length;

    await updateItem(worker, room, { id: "p1", title: "second" });
    await waitFor(() => settled(session.items, "p1", { title: "second" }), { message: "patch applied" });

    // The row kept every other column (the patch was merged, not put).
    expect(rowsOf(session.items).get("p1")).toEqual({ id: "p1", listId: "L", title: "second", rank: 5 });
    const blocks = receivedBlocks(session.log.frames.slice(before));
    expect(blocks.map(([, kind, ...items]) => [kind, items])).toEqual([["u", [{ id: "p1", title: "second" }]]]);
  });

  test("two clients editing different columns of one row at once both survive, on both clients", async () => {
    const room = freshRoom("patch");
    await putItems(worker, room, { id: "c1", listId: "L", title: "draft", rank: 0 });
    const a = openSession({ host: worker.host, room, persistence: freshIndexedDb() });
    const b = openSession({ host: worker.host, room, persistence: freshIndexedDb(), token: "user:bob" });
    await waitFor(() => settled(a.items, "c1", { title: "draft" }) && settled(b.items, "c1", { title: "draft" }), { message: "both synced" });

    const renames = columnMutators(a.client, a.items, room);
    const bumps = columnMutators(b.client, b.items, room);
    const renamed = renames.rename({ id: "c1", title: "final" });
    const bumped = bumps.bump({ id: "c1" });
    await Promise.all([renamed.isPersisted.promise, bumped.isPersisted.promise]);

    const expected = { id: "c1", listId: "L", title: "final", rank: 1 };
    await waitFor(() => settled(a.items, "c1", expected) && settled(b.items, "c1", expected), { message: "both edits on both clients" });
    expect(rowsOf(a.items).get("c1")).toEqual(expected);
    expect(rowsOf(b.items).get("c1")).toEqual(expected);
    expect((await serverItems(worker, room)).find((row) => row.id === "c1")).toMatchObject({ title: "final", rank: 1 });
  });

  test("a client offline across several writes of one row resumes with the union of their columns — also a column changed and changed back — and its own offline edit of another column survives", async () => {
    const room = freshRoom("patch");
    await putItems(worker, room, { id: "o1", listId: "L", title: "one", rank: 0 });
    const proxy = await TcpProxy.start(Number(new URL(`http://${worker.host}`).port));
    onCleanup(() => proxy.stop());
    const persistence = freshIndexedDb();
    const offline = openSession({ host: `127.0.0.1:${proxy.port}`, room, persistence, token: "user:bob" });
    await waitFor(() => settled(offline.items, "o1", { title: "one" }), { message: "synced before going offline" });

    proxy.setOnline(false);
    // While it is away: the title changes and changes back, then the listId
    // stays and the title moves on; the client bumps the rank offline.
    await updateItem(worker, room, { id: "o1", title: "two" });
    await updateItem(worker, room, { id: "o1", title: "one" });
    const bump = columnMutators(offline.client, offline.items, room).bump({ id: "o1" });
    expect(rowsOf(offline.items).get("o1")?.rank).toBe(1); // optimistic
    await updateItem(worker, room, { id: "o1", title: "three" });
    await updateItem(worker, room, { id: "o1", title: "one" });
    const frames = offline.log.frames.length;

    proxy.setOnline(true);
    await bump.isPersisted.promise;
    const expected = { id: "o1", listId: "L", title: "one", rank: 1 };
    await waitFor(() => settled(offline.items, "o1", expected), { message: "converged after the resume" });
    expect(rowsOf(offline.items).get("o1")).toEqual(expected);
    // The resume carried the title (changed and changed back) as a patch, never a whole row.
    const resumed = receivedBlocks(offline.log.frames.slice(frames));
    expect(resumed.some(([, kind, ...items]) => kind === "u" && items.some((item) => (item as Item).id === "o1" && (item as Item).title === "one"))).toBe(true);
    expect(resumed.some(([, kind, ...items]) => kind === "p" && items.some((item) => (item as Item).id === "o1"))).toBe(false);

    // A reload from the query cache and outbox sees the same row.
    offline.close();
    const reloaded = openSession({ host: worker.host, room, persistence, token: "user:bob" });
    await waitFor(() => settled(reloaded.items, "o1", expected), { message: "reloaded" });
    expect(rowsOf(reloaded.items).get("o1")).toEqual(expected);
  });
});
