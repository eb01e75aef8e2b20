/**
 * Types flow from the server's definitions to the client without codegen:
 * `InferLunoraApi<typeof lunora>` on `LunoraClient` types every collection's
 * rows and shape args. Checked by `tsc -p test/workerd` (part of
 * `npm run typecheck`); the runtime part only asserts the options exist.
 */
import { expect, expectTypeOf, test } from "vitest";
import type { InferLunoraApi } from "../../server-kit/index.js";
import type { LunoraClient } from "../../src/client/lunora-client.js";
import { defineCollections } from "../../src/collections/define-collections.js";
import { lunoraCollectionOptions } from "../../src/collections/lunora-collection-options.js";
import { bindMutators, defineMutator } from "../../src/mutators/mutators.js";
import type { lunora } from "../fixtures/room/worker.js";
import { lunora as guarded } from "../fixtures/guarded/worker.js";

type Api = InferLunoraApi<typeof lunora>;

test("row and argument types of lists and shapes come from the room's definitions", () => {
  expectTypeOf<Api["tables"]["items"]>().toEqualTypeOf<{ id: string; listId: string; title: string; rank: number; secret: number }>();
  // The shape projects four columns (the key is always included).
  expectTypeOf<Api["shapes"]["itemsByList"]["row"]>().toEqualTypeOf<{ id: string; listId: string; title: string; rank: number }>();
  expectTypeOf<Api["shapes"]["itemsByList"]["args"]>().toEqualTypeOf<{ listId: string }>();
  // A shape without `columns` has the table's whole row.
  expectTypeOf<Api["shapes"]["itemsRankAtLeast"]["row"]>().toEqualTypeOf<{ id: string; listId: string; title: string; rank: number; secret: number }>();
  // zod and arktype args infer too.
  expectTypeOf<Api["shapes"]["itemsRankAtLeast"]["args"]>().toEqualTypeOf<{ min: number }>();
  expectTypeOf<Api["shapes"]["itemsByTitle"]["args"]>().toEqualTypeOf<{ title: string }>();
  expectTypeOf<Api["mutators"]["items:create"]["args"]>().toEqualTypeOf<{ id: string; listId: string; title: string; rank?: number | undefined }>();

  const client = {} as LunoraClient<Api>;
  const check = () => {
    const { config } = lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "x" } } });
    expectTypeOf(config.getKey).parameter(0).toEqualTypeOf<{ id: string; listId: string; title: string; rank: number }>();
    // @ts-expect-error — not a shape of this room
    lunoraCollectionOptions({ client, shape: { name: "noSuchShape" } });
    // @ts-expect-error — args of the wrong type
    lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: 1 } } });
    // @ts-expect-error — not a table of this room
    lunoraCollectionOptions({ client, list: "nope" });
    // @ts-expect-error — a synced table that is not listable (reachable through its shapes only)
    lunoraCollectionOptions({ client, list: "commas" });
  };
  expect(typeof check).toBe("function");
});

test("only listable tables are lists, with the columns they declare", () => {
  type GuardedApi = InferLunoraApi<typeof guarded>;
  expectTypeOf<keyof GuardedApi["tables"]>().toEqualTypeOf<"posts">();
  expectTypeOf<keyof GuardedApi["shapes"]>().toEqualTypeOf<"postsOfThisRoom" | "notesBody">();
  expect(Object.keys(guarded.tables)).toEqual(["posts", "notes"]);
});

test("writes are typed from the room's mutators: names, toArgs and bound mutator args", () => {
  const client = {} as LunoraClient<Api>;
  type Item = { id: string; listId: string; title: string; rank: number };
  const check = () => {
    const db = defineCollections(client, {
      items: {
        shape: { name: "itemsByList", args: { listId: "L" } },
        insert: {
          mutation: "items:create",
          optimistic: (input: { listId: string; title: string }, id): Item => ({ id, ...input, rank: 0 }),
          toArgs: (row) => ({ id: row.id, listId: row.listId, title: row.title }),
        },
      },
    });
    expectTypeOf(db.actions.items).parameter(0).toEqualTypeOf<{ listId: string; title: string }>();

    // @ts-expect-error — shape args of the wrong type (listId is a string)
    defineCollections(client, { items: { shape: { name: "itemsByList", args: { listId: 42 } } } });
    defineCollections(client, {
      items: {
        shape: { name: "itemsByList" },
        insert: {
          // @ts-expect-error — not a mutator of this room
          mutation: "items:nope",
          optimistic: (input: { title: string }, id) => ({ id, ...input }),
          toArgs: (row) => row,
        },
      },
    });
    defineCollections(client, {
      items: {
        shape: { name: "itemsByList" },
        insert: {
          mutation: "items:create",
          optimistic: (input: { title: string }, id) => ({ id, ...input }),
          // @ts-expect-error — toArgs must return items:create's input (listId is missing)
          toArgs: (row: { id: string; title: string }) => ({ id: row.id, title: row.title }),
        },
      },
    });

    // A mutator that declares no args takes the server mutator's input.
    const bumpItem = defineMutator({ serverRef: "items:bump", apply: () => {} });
    // Client-declared args that fit the server's are kept.
    const renameItem = defineMutator({
      serverRef: "items:rename",
      apply: (_context, _args: { id: string; title: string }) => {},
    });
    const mutate = bindMutators(client, { collections: {} }, { bumpItem, renameItem });
    expectTypeOf(mutate.bumpItem).parameter(0).toEqualTypeOf<{ id: string }>();
    expectTypeOf(mutate.renameItem).parameter(0).toEqualTypeOf<{ id: string; title: string }>();

    const unknownRef = defineMutator({ serverRef: "items:nope", apply: () => {} });
    // @ts-expect-error — not a mutator of this room
    bindMutators(client, { collections: {} }, { unknownRef });
    const contradicts = defineMutator({ serverRef: "items:rename", apply: (_context, _args: { id: string; title: number }) => {} });
    // @ts-expect-error — client args contradict items:rename's ({ title: string })
    bindMutators(client, { collections: {} }, { contradicts });
    const tooFew = defineMutator({ serverRef: "items:rename", apply: (_context, _args: { id: string }) => {} });
    // @ts-expect-error — client args lack title, which items:rename requires
    bindMutators(client, { collections: {} }, { tooFew });
    const widened = defineMutator<{ id: string; title: string }>({ serverRef: "items:nope", apply: () => {} });
    // @ts-expect-error — a serverRef widened to string cannot be checked: name it as a literal
    bindMutators(client, { collections: {} }, { widened });
  };
  expect(typeof check).toBe("function");
});
