import { createCollection, type Collection, type Transaction } from "@tanstack/db";
import type { LunoraClient } from "../client/lunora-client.js";
import { outboxFor, type LunoraOutbox, type OutboxOptions } from "../outbox/outbox.js";
import { LunoraError, type LunoraApi } from "../protocol/index.js";
import { isRecord, lunoraCollectionOptions, roomOf } from "./lunora-collection-options.js";
import type { LunoraCollectionUtils, MutatorInput, MutatorName, ShapeRef } from "./types.js";

/**
 * How a table is written: `actions.<table>(input)` generates a UUID, builds
 * the optimistic row with `optimistic(input, id)`, and sends
 * `toArgs(row)` to the server mutator `mutation`, which must insert the row
 * with that id (`ctx.db.insert(table, doc, { clientId: id })`) so the
 * server row and the optimistic row share a key.
 *
 * With a typed client (`LunoraClient<InferLunoraApi<typeof lunora>>`),
 * `mutation` must be one of the room's mutators and `toArgs` must return
 * that mutator's input.
 */
export interface InsertBinding<Api extends LunoraApi, TRow, TInput, TName extends MutatorName<Api> = MutatorName<Api>> {
  /** The server mutator, e.g. `"messages:send"`. */
  mutation: TName;
  optimistic: (input: TInput, id: string) => TRow;
  toArgs: (row: TRow) => MutatorInput<Api, TName>;
}

/**
 * The insert binding of a `defineCollections` entry: one member per mutator
 * of the room, discriminated by `mutation`, so `toArgs` is checked against
 * the named mutator's input. (`TRow`/`TInput` stay open: the input type is
 * declared on `optimistic`'s parameter.)
 */
export type InsertBindingOf<Api extends LunoraApi> = {
  [M in MutatorName<Api>]: InsertBinding<Api, any, any, M>;
}[MutatorName<Api>];

/** One entry of {@link defineCollections}: a read source (as in `lunoraCollectionOptions`) plus an optional insert binding. */
export interface CollectionDef<Api extends LunoraApi = LunoraApi> {
  /** A whole table under its read rule. */
  list?: Extract<keyof Api["tables"], string>;
  /** A shape and its (base) args. */
  shape?: ShapeRef<Api>;
  /** Row key; defaults to `row.id`. */
  getKey?: (row: any) => string | number;
  /** Scope field: the collection syncs nothing until `scope.<name>(args)`; a written row's `row[scopeBy]` is its room. */
  scopeBy?: string;
  /** The room (shard key): a name, or a function of the scope args (and, for writes, of the row). */
  shardKey?: string | ((args: any) => string);
  load?: "eager" | "lazy";
  /** `"eager"` (default) or `"on-demand"` (query-driven sync); see `lunoraCollectionOptions`. */
  syncMode?: "eager" | "on-demand";
  /** Read-side errors of this collection's subscription. */
  onError?: (error: LunoraError) => void;
  party?: string;
  /** TanStack collection id; defaults to `lunora:<name>`. */
  id?: string;
  gcTime?: number;
  insert?: InsertBindingOf<Api>;
}

/** The row type of a definition, from the client's `Api`. */
export type DefRow<Api extends LunoraApi, D> = D extends { list: infer L }
  ? L extends keyof Api["tables"]
    ? Api["tables"][L]
    : Record<string, unknown>
  : D extends { shape: { name: infer S } }
    ? S extends keyof Api["shapes"]
      ? Api["shapes"][S]["row"]
      : Record<string, unknown>
    : Record<string, unknown>;

/** What `actions.<table>` takes: the first parameter of its `optimistic`. */
export type DefInput<D> = D extends { insert: { optimistic: (input: infer I, id: string) => any } } ? I : never;

/** Options of {@link defineCollections}: the outbox's options (callbacks, persistence, pipelining). */
export type DefineCollectionsOptions = OutboxOptions;

/** What {@link defineCollections} returns. */
export interface DefinedCollections<Api extends LunoraApi, Defs extends Record<string, CollectionDef<Api>>> {
  collections: { [K in keyof Defs]: Collection<DefRow<Api, Defs[K]> & object, string | number, LunoraCollectionUtils> };
  /** One insert action per definition with `insert`. */
  actions: {
    [K in keyof Defs as Defs[K] extends { insert: object } ? K : never]: (input: DefInput<Defs[K]>) => {
      id: string;
      transaction: Transaction<any>;
    };
  };
  /** `scope.<name>(args)` re-points a scoped collection; `scope.<name>()` detaches it. */
  scope: { [K in keyof Defs]: (args?: Record<string, unknown>) => void };
  /** The durable outbox (one per client): `waitForInit()`, `pendingCount`, `dispose()`, `offlineExecutor`. */
  executor: LunoraOutbox;
}

/**
 * Builds the collections of an app and the insert actions that write them
 * through the durable outbox. Build it once per client (it owns the outbox).
 *
 * `actions.<table>(input)` inserts the optimistic row at once, persists the
 * write (IndexedDB by default), sends it on the room's socket, retries
 * transient failures, settles the row when the room's answer arrives with
 * the server row (in the same update: no flicker), and rolls it back on a
 * permanent rejection, reported once through `onWriteRejected`.
 *
 * With a typed client (`LunoraClient<InferLunoraApi<typeof lunora>>`), the
 * definitions are checked against the room: `list` and `shape.name` name its
 * lists and shapes, `shape.args` are the shape's args, `insert.mutation` is
 * one of its mutators and `insert.toArgs` returns that mutator's input (a
 * missing or mistyped field is a compile error). `toArgs`'s `row` is `any`
 * unless annotated. An untyped client accepts any names and args.
 *
 * @example
 * ```ts
 * import { defineCollections } from "@lunora/db";
 *
 * const db = defineCollections(client, {
 *   messages: {
 *     shape: { name: "messagesByChannel" },
 *     scopeBy: "channelId",
 *     insert: {
 *       mutation: "messages:send",
 *       optimistic: (input: { channelId: string; text: string }, id) => ({ id, ...input }),
 *       toArgs: (row) => ({ id: row.id, channelId: row.channelId, text: row.text }),
 *     },
 *   },
 *   users: { list: "users", load: "eager" },
 * }, {
 *   onWriteRejected: ({ collection, code, error }) => toast(`${collection}: ${code} ${error.message}`),
 * });
 *
 * db.scope.messages({ channelId: "general" });
 * const { id, transaction } = db.actions.messages({ channelId: "general", text: "hi" });
 * await transaction.isPersisted.promise; // applied by the room
 * ```
 */
export function defineCollections<Api extends LunoraApi, const Defs extends Record<string, CollectionDef<Api>>>(
  client: LunoraClient<Api>,
  defs: Defs,
  options: DefineCollectionsOptions = {},
): DefinedCollections<Api, Defs> {
  const collections: Record<string, Collection<any, any, any, any, any>> = {};
  const scope: Record<string, (args?: Record<string, unknown>) => void> = {};
  const actions: Record<string, (input: unknown) => { id: string; transaction: Transaction<any> }> = {};
  for (const [name, def] of Object.entries(defs) as Array<[string, CollectionDef<Api>]>) {
    const { insert: _insert, ...source } = def;
    const result = lunoraCollectionOptions({ ...source, client, id: def.id ?? `lunora:${name}` } as never) as ReturnType<
      typeof lunoraCollectionOptions
    >;
    collections[name] = createCollection(result.config as never) as Collection<any, any, any, any, any>;
    scope[name] = result.scope as (args?: Record<string, unknown>) => void;
  }

  const outbox = outboxFor(client, options);
  outbox.registerCollections(collections);
  // The executor's timers and listeners must not outlive the client.
  client.onClose(() => outbox.dispose());

  for (const [name, def] of Object.entries(defs) as Array<[string, CollectionDef<Api>]>) {
    const insert = def.insert;
    if (!insert) continue;
    const collection = collections[name];
    actions[name] = (input) => {
      const id = crypto.randomUUID();
      const row = insert.optimistic(input, id) as Record<string, unknown>;
      const transaction = outbox.enqueue({
        kind: "insert",
        name: insert.mutation,
        args: insert.toArgs(row),
        room: writeRoom(name, def, row),
        party: def.party,
        collection: name,
        row,
        apply: () => {
          collection.insert(row);
        },
      });
      return { id, transaction };
    };
  }

  return { collections, actions, scope, executor: outbox } as unknown as DefinedCollections<Api, Defs>;
}

/** The room an inserted row is written to: where the collection reads it from. */
function writeRoom(name: string, def: CollectionDef<any>, row: Record<string, unknown>): string {
  // A shardKey function sees the shape's args under the row's values; scopeBy reads the row alone.
  const args = typeof def.shardKey === "function" ? { ...(isRecord(def.shape?.args) ? def.shape.args : {}), ...row } : row;
  return roomOf(def.shardKey, def.scopeBy, args, `actions.${name}(row)`) as string;
}
