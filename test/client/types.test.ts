import { createCollection } from "@tanstack/db";
import { describe, expect, expectTypeOf, it } from "vitest";
import { LunoraClient } from "../../src/client/index.js";
import { lunoraCollectionOptions } from "../../src/collections/index.js";
import { defineCollections } from "../../src/index.js";
import { bindMutators, defineMutator } from "../../src/mutators/index.js";
import type { LunoraApi } from "../../src/protocol/index.js";
import { onCleanup } from "./helpers/harness.js";

// Checked by `tsc -p tsconfig.json --noEmit`; the runtime part only builds options.
interface ChatApi extends LunoraApi {
  tables: { messages: { id: string; channelId: string; text: string } };
  shapes: {
    messagesByChannel: { args: { channelId: string; limit?: number }; row: { id: string; text: string } };
  };
  mutators: { "messages:send": { args: { text: string }; result: void } };
}

describe("types", () => {
  it("row and argument types flow from the client's Api to collections", () => {
    const client = new LunoraClient<ChatApi>({ host: "127.0.0.1:1", party: "chat" });
    onCleanup(() => client.close());

    const messages = createCollection(lunoraCollectionOptions({ client, list: "messages" }).config);
    type MessageRow = (typeof messages.toArray)[number];
    expectTypeOf<MessageRow["text"]>().toEqualTypeOf<string>();
    expectTypeOf<MessageRow["channelId"]>().toEqualTypeOf<string>();

    const byChannel = lunoraCollectionOptions({
      client,
      shape: { name: "messagesByChannel", args: { limit: 10 } as { channelId: string; limit?: number } },
      scopeBy: "channelId",
      getKey: (row) => row.id,
    });
    const collection = createCollection(byChannel.config);
    expectTypeOf<(typeof collection.toArray)[number]["text"]>().toEqualTypeOf<string>();
    expectTypeOf(byChannel.scope).parameter(0).toEqualTypeOf<{ channelId?: string; limit?: number } | undefined>();
    expectTypeOf(collection.utils.cursor).returns.toEqualTypeOf<{ seq: number; epoch: string } | undefined>();

    // @ts-expect-error not a table of ChatApi
    lunoraCollectionOptions({ client, list: "nope" });
    // @ts-expect-error channelId is a string
    lunoraCollectionOptions({ client, shape: { name: "messagesByChannel", args: { channelId: 1 } } });
    // @ts-expect-error scopeBy must name an argument of the shape
    lunoraCollectionOptions({ client, shape: { name: "messagesByChannel" }, scopeBy: "teamId" });
  });

  it("an untyped client accepts any name and yields records", () => {
    const client = new LunoraClient({ host: "127.0.0.1:1", party: "chat" });
    onCleanup(() => client.close());
    const anything = createCollection(lunoraCollectionOptions({ client, list: "whatever" }).config);
    expectTypeOf<(typeof anything.toArray)[number]["anyColumn"]>().toEqualTypeOf<unknown>();
    lunoraCollectionOptions({ client, shape: { name: "s", args: { x: 1 } }, scopeBy: "x" });
  });

  it("an untyped client writes through any mutator name with any args", () => {
    const client = new LunoraClient({ host: "127.0.0.1:1", party: "chat" });
    onCleanup(() => client.close());
    // Type-only: building the outbox needs IndexedDB, which this test does not set up.
    const check = () => {
      const db = defineCollections(client, {
        anything: {
          shape: { name: "whatever", args: { x: 1 } },
          insert: {
            mutation: "any:name",
            optimistic: (input: { text: string }, id) => ({ id, ...input }),
            toArgs: (row) => ({ whatever: row, n: 1 }),
          },
        },
      });
      expectTypeOf(db.actions.anything).parameter(0).toEqualTypeOf<{ text: string }>();
      const declared = defineMutator<{ id: string }>({ serverRef: "any:name", apply: () => {} });
      const undeclared = defineMutator({ serverRef: "other:name", apply: () => {} });
      const mutate = bindMutators(client, { collections: db.collections }, { declared, undeclared });
      expectTypeOf(mutate.declared).parameter(0).toEqualTypeOf<{ id: string }>();
      // Without declared args the bound mutator takes what the (unknown) server mutator takes: anything.
      expectTypeOf(mutate.undeclared).parameter(0).toBeAny();
      mutate.undeclared({ anything: 1 });
    };
    expect(typeof check).toBe("function");
  });
});
