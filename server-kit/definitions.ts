import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { Where } from "./where.js";
import type { ServerMutatorDefinition } from "./mutators.js";

/** What a read rule, a shape's `where` and a mutator see: who is asking, in which room. */
export interface LunoraContext<Auth = unknown, Env = unknown> {
  /** The identity `authenticate` returned for this socket. The client cannot forge it. */
  auth: Auth;
  /** The room (shard) name, e.g. the channel id. */
  room: string;
  env: Env;
}

type AnyRow = Record<string, unknown>;

/**
 * A synced table of the room. The table itself is the room's own: Lunora only
 * installs capture triggers on it.
 *
 * ```ts
 * tables: {
 *   messages: { key: "id", row: MessageRow, read: ({ auth }) => ({ deleted: 0 }) },
 * }
 * ```
 */
export interface TableDefinition<Auth = any, Env = any, RowSchema extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined> {
  /** The primary-key column. Rows are identified on the client by its value. */
  key: string;
  /**
   * Row-level read rule, AND-ed with every shape on this table (and alone for
   * the table's list). `false` denies (`FORBIDDEN`). Omitted: every row is
   * readable by every authenticated identity.
   */
  read?: (ctx: LunoraContext<Auth, Env>) => Where;
  /** Optional schema of a row: gives clients the row type (only its type is used). */
  row?: RowSchema;
  /**
   * Columns clients may receive through the table's list, and through shapes
   * of this table that do not list their own `columns`. Required when `list`
   * is true. Omitted: shapes without `columns` send every column.
   */
  columns?: readonly string[];
  /**
   * Whether clients may subscribe to the whole table (`{ list: name }`,
   * filtered by `read`, projected to `columns`). Default false: a table is
   * reachable only through the room's shapes until the room opts in, and
   * opting in requires `columns`, so a list never sends a column the room did
   * not name for clients.
   */
  list?: boolean;
}

/**
 * A shape: one table, a predicate computed on the server from validated args
 * and the caller's identity, and a column projection.
 */
export interface ShapeDefinition<
  Table extends string = string,
  Args extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined,
  Columns extends readonly string[] | undefined = readonly string[] | undefined,
  Auth = any,
  Env = any,
> {
  readonly table: Table;
  /** Any Standard Schema. Args are validated before `where` runs; failure is `INVALID_ARGS`. */
  readonly args?: Args;
  /** AND-ed with the table's read rule. Throw `new LunoraError("FORBIDDEN", …)` to deny. */
  readonly where?: (ctx: LunoraContext<Auth, Env>, args: Args extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<Args> : undefined) => Where;
  /** The columns sent to clients (the key column is always included). */
  readonly columns?: Columns;
  readonly __kind?: "shape";
}

/**
 * Declares a shape.
 *
 * ```ts
 * const messagesByChannel = defineShape({
 *   table: "messages",
 *   args: v.object({ channelId: v.string() }),
 *   where: (ctx, { channelId }) => ({ channelId }),
 *   columns: ["id", "channelId", "text", "authorId"],
 * });
 * ```
 */
export function defineShape<
  const Table extends string,
  Args extends StandardSchemaV1 | undefined = undefined,
  const Columns extends readonly string[] | undefined = undefined,
  Auth = any,
  Env = any,
>(shape: ShapeDefinition<Table, Args, Columns, Auth, Env>): ShapeDefinition<Table, Args, Columns, Auth, Env> {
  return shape;
}

/** Retention of the change log. A row is trimmed when it is beyond `maxRows` newest OR older than `maxAgeMs`. */
export interface RetentionOptions {
  /** Default 100,000. */
  maxRows?: number;
  /** Default 7 days. */
  maxAgeMs?: number;
  /** Sweep after this many new log rows. Default 1,000. */
  sweepEvery?: number;
  /** At most this many rows are deleted per sweep. Default 10,000. */
  batch?: number;
}

export interface LimitOptions {
  /** Subscriptions per socket. Default 100 (the attachment must stay under 16 KiB). */
  maxSubscriptionsPerSocket?: number;
  /** Log rows a resume may read before the room answers with a reset instead. Default 100,000. */
  maxResumeLogRows?: number;
  /** Bad frames a socket may send before it is closed (4008). Default 100. */
  maxProtocolErrors?: number;
  /**
   * Characters of poke frames a socket may have unacknowledged (see the `ack`
   * frame) before it is closed as a slow consumer (4009). Default 8 MiB.
   */
  maxUnackedChars?: number;
}

/** Options of {@link withLunora}. */
export interface LunoraOptions<Auth = any, Env = any> {
  tables: Record<string, TableDefinition<Auth, Env, any>>;
  shapes?: Record<string, ShapeDefinition<string, any, any, Auth, Env>>;
  /** Server mutators by name (the name clients push under, e.g. `"messages:send"`). */
  mutators?: Record<string, ServerMutatorDefinition<any, any, Auth, Env>>;
  /**
   * Verifies the upgrade request (e.g. a `token` query parameter) and returns
   * the identity, or null to refuse (`UNAUTHENTICATED`, close 4001). Return
   * `expiresAt` (ms since epoch) to have the socket closed with 4001 once the
   * token expires; the client then re-reads its token and resumes.
   * Omitted: every socket is the anonymous identity `{}`.
   */
  authenticate?: (request: Request, env: Env) => Auth | null | undefined | Promise<Auth | null | undefined>;
  /**
   * The stable string naming an identity (watermarks are kept per identity).
   * Default: `user:<userId>` for a string `auth.userId`, `user#<userId>` for a
   * number (5 and "5" are different users), else `sub:<auth.sub>`, else the JSON of `auth`.
   */
  identify?: (auth: Auth) => string;
  retention?: RetentionOptions;
  limits?: LimitOptions;
}

type RowOf<T> = T extends { row: infer S } ? (S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : AnyRow) : AnyRow;

type IsAny<T> = 0 extends 1 & T ? true : false;

/** A shape's row: the table's row, projected to `columns` (plus the key) when they are listed. */
type ShapeRow<O extends LunoraOptions, S> = S extends ShapeDefinition<infer Table, any, infer Columns>
  ? Table extends keyof O["tables"]
    ? IsAny<Columns> extends true
      ? RowOf<O["tables"][Table]>
      : [Columns] extends [readonly string[]]
        ? string extends Columns[number]
          ? RowOf<O["tables"][Table]>
          : Pick<RowOf<O["tables"][Table]>, Extract<Columns[number] | O["tables"][Table]["key"], keyof RowOf<O["tables"][Table]>>>
        : RowOf<O["tables"][Table]>
    : AnyRow
  : AnyRow;

/** A list's row: the table's row, projected to its declared `columns` (plus the key). */
type ListRow<T> = T extends { columns: infer Columns; key: infer Key }
  ? [Columns] extends [readonly string[]]
    ? string extends Columns[number]
      ? RowOf<T>
      : Pick<RowOf<T>, Extract<Columns[number] | Key, keyof RowOf<T>>>
    : RowOf<T>
  : RowOf<T>;

type ShapeArgs<S> = S extends ShapeDefinition<any, infer Args> ? (Args extends StandardSchemaV1 ? StandardSchemaV1.InferInput<Args> : undefined) : never;

/**
 * The client-side view of a room's definitions, for `LunoraClient<Api>`:
 *
 * ```ts
 * // client.ts
 * import type { lunora } from "../worker/room";
 * const client = new LunoraClient<InferLunoraApi<typeof lunora>>({ host, party: "chat-room" });
 * ```
 */
export type InferLunoraApi<O extends LunoraOptions> = {
  /** The tables clients may list (`list: true`), each row projected to the table's declared `columns`. */
  tables: { [T in keyof O["tables"] & string as O["tables"][T] extends { list: true } ? T : never]: ListRow<O["tables"][T]> };
  shapes: {
    [S in keyof NonNullable<O["shapes"]> & string]: { args: ShapeArgs<NonNullable<O["shapes"]>[S]>; row: ShapeRow<O, NonNullable<O["shapes"]>[S]> };
  };
  mutators: {
    [M in keyof NonNullable<O["mutators"]> & string]: NonNullable<O["mutators"]>[M] extends ServerMutatorDefinition<infer A, infer R>
      ? { args: A extends StandardSchemaV1 ? StandardSchemaV1.InferInput<A> : undefined; result: R }
      : { args: unknown; result: unknown };
  };
};

/**
 * Declares the options once, so the client can import their type:
 * `export const lunora = defineLunora({...}); class Room extends withLunora(DurableObject, lunora) {}`.
 */
export function defineLunora<const O extends LunoraOptions>(options: O): O {
  return options;
}
