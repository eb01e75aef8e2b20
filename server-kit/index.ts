/**
 * `@lunora/db/server-kit`: make any Durable Object a sync server.
 *
 * @packageDocumentation
 */
export { withLunora, type WithLunora } from "./with-lunora.js";
export { routeLunoraRequest, type RouteOptions } from "./route.js";
export {
  defineShape,
  defineLunora,
  type InferLunoraApi,
  type LunoraContext,
  type LunoraOptions,
  type ShapeDefinition,
  type TableDefinition,
  type RetentionOptions,
  type LimitOptions,
} from "./definitions.js";
export { SyncRoom, SYNC_SOCKET_TAG } from "./sync-room.js";
export { defineMutator, clientWatermark, OUTCOMES_KEPT_PER_CLIENT, type MutationContext, type ServerMutatorDefinition } from "./mutators.js";
export { LunoraDb } from "./db.js";
export type { Where, WhereCondition, WhereScalar } from "./where.js";
export { LunoraError, isLunoraError, type ErrorCode, type ErrorBody } from "../src/protocol/errors.js";
