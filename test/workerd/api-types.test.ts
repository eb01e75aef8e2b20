/**
 * Types flow from the server's definitions to the client without codegen:
 * `InferLunoraApi<typeof lunora>` on `LunoraClient` types every collection's
 * rows and shape args. Checked by `tsc -p test/workerd` (part of
 * `npm run typecheck`); the runtime part only asserts the options exist.
 */
import { expect, expectTypeOf, test } from "vitest";
import type { InferLunoraApi } from "../../server-kit/index.js";
import type { LunoraClient } from "../../src/client/lunora-client.js";
import { lunoraCollectionOptions } from "../../src/collections/lunora-collection-options.js";
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
