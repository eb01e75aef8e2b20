/**
 * Subscriptions: what a client asked for (a list or a shape with args),
 * resolved against the room's definitions and the socket's identity into a
 * checked predicate and projection; and the membership diff that turns one
 * key's change into the op a subscription receives.
 */
import { LunoraError, type Binding, type OpKind } from "../src/protocol/index.js";
import type { KeyChange, TableInfo } from "./change-log.js";
import type { LunoraContext, LunoraOptions, ShapeDefinition, TableDefinition } from "./definitions.js";
import { groupId } from "./groups.js";
import type { SocketAttachment, StoredSubscription } from "./socket-state.js";
import { checkParameters, compileSubsetWhere, projectedColumns } from "./subsets.js";
import { andWhere, compileWhere, matchesWhere, type Affinity, type CompiledWhere } from "./where.js";

/** A subscription with its predicate resolved against the socket's identity. */
export interface ResolvedSubscription {
  id: string;
  table: string;
  key: string;
  columns: string[];
  where: CompiledWhere;
  /** The projected columns and their affinities: all a subset may name. */
  projected: ReadonlyMap<string, Affinity>;
  /**
   * What the subscription reads — `[table, predicate, columns]` as JSON.
   * Subscriptions with equal groups receive identical ops, computed once per
   * flush and sent under {@link groupId}.
   */
  group: string;
  /** The short id ops for {@link group} travel under (see groups.ts). */
  groupId: string;
}

/** What a poke that starts a subscription tells the client about it (`bind`). */
export function bindingOf(sub: ResolvedSubscription): Binding {
  return { sub: sub.id, group: sub.groupId, key: sub.key, columns: sub.columns };
}

/** One subscription group's op for one changed key: its kind and its item, serialized once per flush. */
export interface GroupOp {
  kind: OpKind;
  /** The block item as JSON: a whole row (`p`), a patch (`u`) or a key (`d`). */
  json: string;
  key: string | number;
}

/** What resolving needs of the room. */
export interface RoomDefinitions<Auth, Env> {
  options: LunoraOptions<Auth, Env>;
  tables: ReadonlyMap<string, TableDefinition>;
  shapes: ReadonlyMap<string, ShapeDefinition>;
  env: Env;
  /** The synced table's live columns (throws when it does not exist yet). */
  tableInfo(name: string): TableInfo;
}

/**
 * Turns a subscription's source and validated args into a checked
 * predicate and projection for this identity. Throws coded errors:
 * `SHAPE_NOT_FOUND`, `FORBIDDEN` (read rule returned false or `where` threw
 * FORBIDDEN), `INVALID_ARGS` (predicate names unknown columns, or a
 * subset names a column the subscription does not project).
 *
 * `subsetWhere` (on-demand sync, see subsets.ts) is ANDed in, so the group
 * — and with it the ops computed once per flush — is shared only by
 * subscriptions with the same subset.
 */
export function resolveSubscription<Auth, Env>(
  room: RoomDefinitions<Auth, Env>,
  id: string,
  source: StoredSubscription["source"],
  args: unknown,
  attachment: SocketAttachment,
  subsetWhere?: unknown,
  idOf: (group: string) => string = groupId,
): ResolvedSubscription {
  const ctx: LunoraContext<Auth, Env> = { auth: attachment.auth as Auth, room: attachment.room, env: room.env };
  let tableName: string;
  let shape: ShapeDefinition | undefined;
  if ("list" in source) {
    const def = Object.hasOwn(room.options.tables, source.list) ? room.tables.get(source.list) : undefined;
    // Tables are not lists unless the room says so (`list: true`).
    if (def === undefined || def.list !== true) throw new LunoraError("SHAPE_NOT_FOUND", `unknown list "${source.list}"`);
    tableName = source.list;
  } else {
    shape = Object.hasOwn(room.options.shapes ?? {}, source.shape) ? room.shapes.get(source.shape) : undefined;
    if (shape === undefined) throw new LunoraError("SHAPE_NOT_FOUND", `unknown shape "${source.shape}"`);
    tableName = shape.table;
  }
  const def = room.tables.get(tableName)!;
  const info = room.tableInfo(tableName);
  const read = def.read ? def.read(ctx) : true;
  if (read === false) throw new LunoraError("FORBIDDEN", `not allowed to read "${tableName}"`);
  let where = compileWhere(read, info.columns);
  if (shape?.where) where = andWhere(where, compileWhere(shape.where(ctx, args as never), info.columns));
  const wanted = shape?.columns ?? def.columns ?? [...info.columns.keys()];
  const columns = [...new Set([info.key, ...wanted])];
  for (const column of columns) {
    if (!info.columns.has(column)) throw new LunoraError("INTERNAL", `column "${column}" of "${tableName}" does not exist`);
  }
  const projected = projectedColumns(info, columns);
  if (subsetWhere !== undefined) where = andWhere(where, compileSubsetWhere(subsetWhere, projected));
  checkParameters(where);
  // JSON of the column list, not a join: a column name may contain a comma.
  const group = JSON.stringify([tableName, where, columns]);
  return { id, table: tableName, key: info.key, columns, where, projected, group, groupId: idOf(group) };
}

/**
 * One key's change as seen by one subscription: entering → put (`p`),
 * leaving → delete (`d`), staying in with projected columns changed → patch
 * (`u`: the key column and the changed columns, final values) or, when every
 * projected column changed or the change is a whole-row one (see
 * {@link KeyChange.changed}), a put; else nothing.
 *
 * `wholeRows`: answer a put where a patch would do — for a subscription
 * whose rows may not be at the change's `before` (a snapshot being streamed).
 */
export function membershipOp(sub: ResolvedSubscription, change: KeyChange, wholeRows = false): [OpKind, string] | null {
  if (change.table !== sub.table) return null;
  const before = change.before !== null && matchesWhere(sub.where, change.before);
  const after = change.after !== null && matchesWhere(sub.where, change.after);
  if (!after) return before ? ["d", JSON.stringify(change.key)] : null;
  if (!before || change.changed === null) return ["p", JSON.stringify(project(change.after!, sub.columns))];
  let patched = 0;
  for (const column of sub.columns) if (column !== sub.key && change.changed.has(column)) patched++;
  if (patched === 0) return null;
  if (wholeRows || patched === sub.columns.length - 1) return ["p", JSON.stringify(project(change.after!, sub.columns))];
  // Null-prototype objects: a column may be named "__proto__".
  const patch: Record<string, unknown> = Object.create(null);
  patch[sub.key] = change.key;
  for (const column of sub.columns) if (column !== sub.key && change.changed.has(column)) patch[column] = change.after![column] ?? null;
  return ["u", JSON.stringify(patch)];
}

function project(row: Record<string, unknown>, columns: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const column of columns) out[column] = row[column] ?? null;
  return out;
}

/** Bounds on a shape's raw args, checked before any schema sees them. */
const MAX_ARGS_DEPTH = 32;
const MAX_ARGS_CHARS = 8 * 1024;

/**
 * Rejects args too deep or too large to be anything but junk with
 * `INVALID_ARGS` — iteratively, so a 100,000-deep value cannot overflow the
 * stack of the schema that would walk it next.
 */
export function checkArgsBounds(args: unknown, shape: string): void {
  const invalid = (why: string) => new LunoraError("INVALID_ARGS", `args of shape "${shape}" ${why}`);
  const stack: Array<[unknown, number]> = [[args, 0]];
  let seen = 0;
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (depth > MAX_ARGS_DEPTH) throw invalid(`are nested deeper than ${MAX_ARGS_DEPTH}`);
    if (typeof value === "string") seen += value.length;
    else if (typeof value === "object" && value !== null) {
      for (const [key, child] of Object.entries(value)) {
        seen += key.length + 1;
        stack.push([child, depth + 1]);
      }
    } else seen += 8;
    if (seen > MAX_ARGS_CHARS) throw invalid(`are larger than ${MAX_ARGS_CHARS} characters`);
  }
}
