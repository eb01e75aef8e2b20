import type { CollectionConfig } from "@tanstack/db";
import type { LunoraClient } from "../client/lunora-client.js";
import type { Cursor, LunoraApi, LunoraError } from "../protocol/index.js";
import type { Checkpoints } from "./checkpoints.js";

/** Table names of an API (each table is also a "list"). */
export type ListName<Api extends LunoraApi> = Extract<keyof Api["tables"], string>;
/** Shape names of an API. */
export type ShapeName<Api extends LunoraApi> = Extract<keyof Api["shapes"], string>;
/** Arguments of a shape. */
export type ShapeArgs<Api extends LunoraApi, TName extends ShapeName<Api>> = Api["shapes"][TName]["args"];
/** Mutator names of an API (`string` for an untyped client). */
export type MutatorName<Api extends LunoraApi> = Extract<keyof Api["mutators"], string>;
/** What a server mutator accepts: the input of its args schema. */
export type MutatorInput<Api extends LunoraApi, TName extends MutatorName<Api>> = Api["mutators"][TName]["args"];
/**
 * `shape` of a `defineCollections` entry: one member per shape of the room,
 * so `args` is checked against the named shape's args.
 */
export type ShapeRef<Api extends LunoraApi> = {
  [S in ShapeName<Api>]: { name: S; args?: ShapeArgs<Api, S> };
}[ShapeName<Api>];
/** What `scope(args)` of a shape collection takes: any subset of the shape's args. */
export type ShapeScopeArgs<Api extends LunoraApi, TName extends ShapeName<Api>> =
  ShapeArgs<Api, TName> extends object ? Partial<ShapeArgs<Api, TName>> : Record<string, unknown>;

/** Options shared by list and shape collections. */
export interface LunoraCollectionBaseOptions<TRow extends object, TKey extends string | number, TArgs, TScopeArgs> {
  /** Collection id (TanStack DB); TanStack generates one when omitted. */
  id?: string;
  /** Row key; defaults to `row.id`. Must agree with the table's key column. */
  getKey?: (row: TRow) => TKey;
  /**
   * The room (shard key) to read from: a fixed name, or a function of the
   * subscription's args. Defaults to `String(args[scopeBy])` with `scopeBy`,
   * else `"default"`.
   */
  shardKey?: string | ((args: TArgs) => string);
  /**
   * Makes the collection scoped: nothing syncs until `scope(args)` names the
   * args, and `args[scopeBy]` is the default room.
   */
  scopeBy?: Extract<keyof TScopeArgs, string>;
  /** `eager` starts syncing when the collection is created; `lazy` (default) when first read. */
  load?: "eager" | "lazy";
  /**
   * TanStack DB's sync mode, passed through to the collection config.
   *
   * - `"eager"` (default): the collection subscribes to its whole list or
   *   shape and holds every row; queries run over local data.
   * - `"on-demand"`: query-driven sync. Nothing is subscribed until a live
   *   query reads the collection; each query's `where`, `orderBy` and
   *   `limit` are pushed down to the room as a subset of the shape
   *   (`loadSubset`), kept live, and released when the query goes
   *   (`unloadSubset`). Expressions the room's predicate language lacks load
   *   a wider set, never a narrower one. Choose it for shapes too large to
   *   hold whole, or where each screen shows a small window of them.
   *
   * @example
   * ```ts
   * const items = createCollection(
   *   lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId } }, syncMode: "on-demand" }).config,
   * );
   * const top = createLiveQueryCollection((q) =>
   *   q.from({ i: items }).orderBy(({ i }) => i.rank, "desc").limit(50),
   * ); // loads 50 rows, not the list
   * ```
   */
  syncMode?: "eager" | "on-demand";
  /** Errors of this collection's subscription (denied read, bad args, unknown shape…). */
  onError?: (error: LunoraError) => void;
  /** The party (Durable Object binding); defaults to the client's. */
  party?: string;
  /** TanStack DB garbage-collection delay after the last reader leaves. */
  gcTime?: number;
}

/** `lunoraCollectionOptions` for a whole table under its read rule. */
export interface LunoraListCollectionOptions<
  Api extends LunoraApi,
  TName extends ListName<Api>,
  TKey extends string | number,
> extends LunoraCollectionBaseOptions<Api["tables"][TName], TKey, Record<string, unknown>, Record<string, unknown>> {
  client: LunoraClient<Api>;
  /** The table. */
  list: TName;
  shape?: undefined;
}

/** `lunoraCollectionOptions` for a named shape. */
export interface LunoraShapeCollectionOptions<
  Api extends LunoraApi,
  TName extends ShapeName<Api>,
  TKey extends string | number,
> extends LunoraCollectionBaseOptions<
    Api["shapes"][TName]["row"],
    TKey,
    ShapeArgs<Api, TName>,
    ShapeScopeArgs<Api, TName>
  > {
  client: LunoraClient<Api>;
  /** The shape and its (base) args; `scope(args)` merges over them. */
  shape: { name: TName; args?: ShapeArgs<Api, TName> };
  list?: undefined;
}

/** `collection.utils` of a Lunora collection. */
export type LunoraCollectionUtils = {
  /** The cursor of the rows currently held (where a resume starts). */
  cursor: () => Cursor | undefined;
  /** The room the collection currently reads, `undefined` while detached or not started. */
  room: () => string | undefined;
  /**
   * Whether the rows are the server's state for the current scope: a poke has
   * been applied since the collection (re)subscribed and no reset is pending.
   */
  isAuthoritative: () => boolean;
  /**
   * `Date.now()` of the last applied poke; for rows restored from the query
   * cache, of the poke they were last written after (how old they may be).
   */
  lastSyncedAt: () => number | undefined;
  /**
   * Calls `listener` after `isAuthoritative()` or `lastSyncedAt()` may have
   * changed (rows restored from the cache, a poke applied, an error, a
   * re-scope). Returns a function that removes it. `useSyncState` in
   * `@lunora/db/react` is built on it.
   *
   * @example
   * ```ts
   * const stop = messages.utils.onSyncStateChange(() => {
   *   badge.hidden = messages.utils.isAuthoritative(); // "syncing…" until the room confirms
   * });
   * ```
   */
  onSyncStateChange: (listener: () => void) => () => void;
};

/** The TanStack DB config produced for a Lunora collection. */
export type LunoraCollectionConfig<TRow extends object, TKey extends string | number> = CollectionConfig<
  TRow,
  TKey,
  never,
  LunoraCollectionUtils
> & { utils: LunoraCollectionUtils };

/** What `lunoraCollectionOptions` returns. */
export interface LunoraCollectionOptionsResult<TRow extends object, TKey extends string | number, TScopeArgs> {
  /** Pass to `createCollection`. */
  config: LunoraCollectionConfig<TRow, TKey>;
  /**
   * `scope(args)` points the collection at `{ ...shape.args, ...args }` in
   * room `shardKey(args)`: the old subscription stops and its rows are dropped
   * in one transaction before the new snapshot arrives. `scope()` detaches
   * (no subscription, no rows). Works before or after sync has started.
   * Throws `INVALID_ARGS` when `args[scopeBy]` is missing or the room name is invalid.
   */
  scope: (args?: TScopeArgs) => void;
  /** Mutation outcomes per room, shared by every collection of the client. */
  checkpoints: Checkpoints;
  /** Same object as `config.utils`. */
  utils: LunoraCollectionUtils;
}
