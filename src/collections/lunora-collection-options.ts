import { BasicIndex } from "@tanstack/db";
import { Listeners } from "../client/listeners.js";
import { assertRoomName } from "../client/room-name.js";
import { LunoraError, type LunoraApi, type Source } from "../protocol/index.js";
import { checkpointsFor } from "./checkpoints.js";
import { CollectionSyncRun, targetCacheKey, type SyncTarget } from "./collection-sync.js";
import { OnDemandSyncRun } from "./on-demand-sync.js";
import type {
  ListName,
  LunoraCollectionConfig,
  LunoraCollectionOptionsResult,
  LunoraCollectionUtils,
  LunoraListCollectionOptions,
  LunoraShapeCollectionOptions,
  ShapeName,
  ShapeScopeArgs,
} from "./types.js";

/** Room of a collection without `shardKey` or `scopeBy`. */
export const DEFAULT_ROOM = "default";

/**
 * A TanStack DB collection source backed by a Lunora room: pass
 * `result.config` to `createCollection`.
 *
 * Each poke from the room is written as one sync transaction (a reset is a
 * `truncate` inside it), so readers never see half a poke. The collection
 * becomes ready after its first poke, or on a subscription error. With
 * `syncMode: "on-demand"` it is ready at once and each live query's load
 * settles when its subset's first poke (or cached rows) is applied.
 *
 * @example
 * ```ts
 * import { createCollection } from "@tanstack/db";
 * import { lunoraCollectionOptions } from "@lunora/db/collections";
 *
 * // A whole table:
 * const messages = createCollection(lunoraCollectionOptions({ client, list: "messages" }).config);
 *
 * // A shape, scoped to one channel (room = channelId):
 * const byChannel = lunoraCollectionOptions({
 *   client,
 *   shape: { name: "messagesByChannel" },
 *   scopeBy: "channelId",
 * });
 * const channelMessages = createCollection(byChannel.config);
 * byChannel.scope({ channelId: "general" }); // subscribe
 * byChannel.scope({ channelId: "random" });  // re-point
 * byChannel.scope();                         // detach
 *
 * // Query-driven: only what live queries ask for is loaded (see `syncMode`).
 * const items = createCollection(
 *   lunoraCollectionOptions({ client, shape: { name: "itemsByList", args: { listId: "l1" } }, syncMode: "on-demand" }).config,
 * );
 * ```
 */
export function lunoraCollectionOptions<
  Api extends LunoraApi,
  TName extends ListName<Api>,
  TKey extends string | number = string | number,
>(
  options: LunoraListCollectionOptions<Api, TName, TKey>,
): LunoraCollectionOptionsResult<Api["tables"][TName], TKey, Record<string, unknown>>;
export function lunoraCollectionOptions<
  Api extends LunoraApi,
  TName extends ShapeName<Api>,
  TKey extends string | number = string | number,
>(
  options: LunoraShapeCollectionOptions<Api, TName, TKey>,
): LunoraCollectionOptionsResult<Api["shapes"][TName]["row"], TKey, ShapeScopeArgs<Api, TName>>;
export function lunoraCollectionOptions(
  options: LunoraListCollectionOptions<LunoraApi, string, string | number> | LunoraShapeCollectionOptions<LunoraApi, string, string | number>,
): LunoraCollectionOptionsResult<Record<string, unknown>, string | number, Record<string, unknown>> {
  const { client } = options;
  const locate = targetResolver(options);
  const getKey = options.getKey ?? defaultGetKey;
  const scoped = options.scopeBy !== undefined;

  // Computed now so a bad shardKey fails here, not later inside sync().
  let target: SyncTarget | undefined = scoped ? undefined : locate(undefined);
  const syncMode = options.syncMode ?? "eager";
  if (syncMode !== "eager" && syncMode !== "on-demand") {
    throw new LunoraError("INVALID_ARGS", 'lunoraCollectionOptions: `syncMode` must be "eager" or "on-demand"');
  }
  let run: CollectionSyncRun<Record<string, unknown>, string | number> | OnDemandSyncRun<Record<string, unknown>, string | number> | undefined;
  const syncStateListeners = new Listeners<[]>();

  const scope = (args?: Record<string, unknown>): void => {
    const next = args === undefined ? undefined : locate(args);
    if (sameTarget(next, target)) return;
    target = next;
    run?.point(next);
  };

  const utils: LunoraCollectionUtils = {
    cursor: () => run?.cursor,
    room: () => run?.room,
    isAuthoritative: () => run?.isAuthoritative ?? false,
    lastSyncedAt: () => run?.lastSyncedAt,
    onSyncStateChange: (listener) => syncStateListeners.add(listener),
  };

  const config: LunoraCollectionConfig<Record<string, unknown>, string | number> = {
    ...(options.id !== undefined ? { id: options.id } : {}),
    ...(options.gcTime !== undefined ? { gcTime: options.gcTime } : {}),
    getKey,
    startSync: options.load === "eager",
    syncMode,
    // On demand, TanStack DB refills a `limit` window that lost rows (a row
    // deleted or moved out) only through an index on the ordered column; with
    // none it left the window short. Auto-indexing builds those indexes.
    ...(syncMode === "on-demand" ? { autoIndex: "eager" as const, defaultIndexType: BasicIndex } : {}),
    utils,
    sync: {
      // Puts carry whole post-images; merging would keep columns the server removed.
      rowUpdateMode: "full",
      sync: (params) => {
        const runOptions = { client, getKey, onError: options.onError, onSyncStateChange: () => syncStateListeners.emit() };
        const current = syncMode === "on-demand" ? new OnDemandSyncRun(params, runOptions) : new CollectionSyncRun(params, runOptions);
        run = current;
        current.point(target);
        const cleanup = () => {
          current.stop();
          if (run === current) run = undefined;
        };
        return current instanceof OnDemandSyncRun
          ? { loadSubset: (subset) => current.loadSubset(subset), unloadSubset: (subset) => current.unloadSubset(subset), cleanup }
          : { cleanup };
      },
    },
  };

  return { config, scope, checkpoints: checkpointsFor(client), utils };
}

/** Builds the function from scope args to the room and source a collection reads. */
function targetResolver(
  options: LunoraListCollectionOptions<LunoraApi, string, string | number> | LunoraShapeCollectionOptions<LunoraApi, string, string | number>,
): (scopeArgs: Record<string, unknown> | undefined) => SyncTarget {
  const hasList = options.list !== undefined;
  const hasShape = options.shape !== undefined;
  if (hasList === hasShape) {
    throw new LunoraError("INVALID_ARGS", "lunoraCollectionOptions: pass exactly one of `list` or `shape`");
  }
  const party = options.party ?? options.client.party;
  const { scopeBy, shardKey } = options;
  const baseArgs = options.shape?.args;

  return (scopeArgs) => {
    if (scopeArgs !== undefined && (typeof scopeArgs !== "object" || scopeArgs === null)) {
      throw new LunoraError("INVALID_ARGS", "scope(args): args must be an object");
    }
    const args: unknown =
      scopeArgs === undefined ? baseArgs : { ...(isRecord(baseArgs) ? baseArgs : {}), ...scopeArgs };
    const room = roomOf(shardKey, scopeBy, args, "scope(args)");
    assertRoomName("room", room);

    const source: Source = hasList
      ? { list: options.list! }
      : args === undefined
        ? { shape: options.shape!.name }
        : { shape: options.shape!.name, args };
    return { party, room, source };
  };
}

/**
 * The room of a collection's rows: its `shardKey` (a function is given
 * `args`), else the `scopeBy` value of `args` (the scope args, or a row being
 * written), else {@link DEFAULT_ROOM}. `context` names the caller in the
 * error of a missing `scopeBy` value.
 */
export function roomOf(shardKey: string | ((args: never) => string) | undefined, scopeBy: string | undefined, args: unknown, context: string): unknown {
  if (typeof shardKey === "function") return shardKey(args as never);
  if (shardKey !== undefined) return shardKey;
  if (scopeBy === undefined) return DEFAULT_ROOM;
  const value = isRecord(args) ? args[scopeBy] : undefined;
  if (value === undefined || value === null) throw new LunoraError("INVALID_ARGS", `${context}: \`${scopeBy}\` is required (it names the room)`);
  return String(value);
}

function defaultGetKey(row: Record<string, unknown>): string | number {
  const id = row.id;
  if (typeof id === "string" || typeof id === "number") return id;
  throw new LunoraError("INVALID_ARGS", "row has no string or number `id`; pass getKey to lunoraCollectionOptions");
}

/** Same view: compared canonically (args in any key order), as the query cache keys views. */
function sameTarget(a: SyncTarget | undefined, b: SyncTarget | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return targetCacheKey(a) === targetCacheKey(b);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
