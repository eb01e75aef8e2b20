/**
 * The scripted-room scenario the on-demand client tests share: an on-demand
 * collection over `props`, a live top-2 query (`grp = "x"`, `a` descending),
 * and the frames a room answers it with.
 */
import { createCollection, createLiveQueryCollection, eq, type Collection } from "@tanstack/db";
import type { LunoraClient } from "../../../src/client/index.js";
import { lunoraCollectionOptions } from "../../../src/collections/index.js";
import type { OpBlock } from "../../../src/protocol/index.js";
import { onCleanup } from "./harness.js";
import { groupOf, type RoomSocket } from "./scripted-room.js";

export const put = (sub: string, key: string, row: Record<string, unknown>): OpBlock => [groupOf(sub), "p", { id: key, ...row }];
export const patch = (sub: string, key: string, row: Record<string, unknown>): OpBlock => [groupOf(sub), "u", { id: key, ...row }];
export const del = (sub: string, key: string): OpBlock => [groupOf(sub), "d", key];

/** The columns of a `props` row (bindings of the on-demand scenarios). */
export const PROPS_COLUMNS = ["id", "grp", "a"];

/** Keys of a collection, sorted. */
export const ids = (collection: { keys(): IterableIterator<string | number> }) => [...collection.keys()].map(String).sort();

/** The predicate the scripted room resolves the top-2 window to: `grp = x AND a >= 8`. */
export const TOP_TWO_RESOLVED = { $and: [{ grp: { eq: "x" } }, { a: { gte: 8 } }] };

/**
 * An on-demand `props` collection of `client` with the top-2 live query
 * read (a mounted component). `transactions()` counts the collection's sync
 * transactions (each `begin()` opens one).
 */
export function onDemandTopTwo(client: LunoraClient<any>) {
  const options = lunoraCollectionOptions({ client, list: "props", syncMode: "on-demand" } as never) as { config: any };
  let transactions = 0;
  const sync = options.config.sync.sync;
  options.config.sync.sync = (params: any) =>
    sync({
      ...params,
      begin: () => {
        transactions++;
        params.begin();
      },
    });
  const props = createCollection(options.config as never) as unknown as Collection<Record<string, unknown>, string>;
  const top = createLiveQueryCollection((q: any) =>
    q.from({ p: props }).where(({ p }: any) => eq(p.grp, "x")).orderBy(({ p }: any) => p.a, "desc").limit(2),
  ) as unknown as Collection<Record<string, unknown>, string>;
  const reader = top.subscribeChanges(() => undefined);
  onCleanup(async () => {
    reader.unsubscribe();
    await top.cleanup();
    await props.cleanup();
  });
  return { props, top, transactions: () => transactions };
}

/**
 * Plays the room's answer to the top-2 load on `socket`: the window (r9, r8)
 * resolved to {@link TOP_TWO_RESOLVED} at cursor 10, then the tie TanStack
 * loads at the boundary (a = 8). Returns the two subscribe frames.
 */
export async function serveTopTwo(socket: RoomSocket) {
  const window = await socket.subscribeFrame(0);
  socket.pokeFrame({
    pokeId: "p1",
    subs: [window.id!],
    columns: PROPS_COLUMNS,
    resets: [window.id!],
    subsets: [{ sub: window.id!, where: TOP_TWO_RESOLVED }],
    ops: [put(window.id!, "r9", { grp: "x", a: 9 }), put(window.id!, "r8", { grp: "x", a: 8 })],
    cursor: { seq: 10, epoch: "e1" },
  });
  const tie = await socket.subscribeFrame(1);
  socket.pokeFrame({ pokeId: "p2", subs: [tie.id!], columns: PROPS_COLUMNS, resets: [tie.id!], ops: [put(tie.id!, "r8", { grp: "x", a: 8 })], cursor: { seq: 10, epoch: "e1" } });
  return { window, tie };
}
