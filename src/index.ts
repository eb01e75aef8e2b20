/**
 * `@lunora/db`: local-first sync for TanStack DB, served by Cloudflare
 * Durable Objects.
 *
 * @example
 * ```ts
 * import { createCollection } from "@tanstack/db";
 * import { LunoraClient, lunoraCollectionOptions } from "@lunora/db";
 *
 * const client = new LunoraClient({ host: "my-app.workers.dev", party: "chat-room" });
 * const messages = createCollection(lunoraCollectionOptions({ client, list: "messages" }).config);
 * ```
 */
export * from "./client/index.js";
export * from "./collections/index.js";
// defineCollections lives here, not in `@lunora/db/collections`: it brings the
// durable outbox (@tanstack/offline-transactions), which a read-only app
// using lunoraCollectionOptions alone does not need to load.
export { defineCollections } from "./collections/define-collections.js";
export type {
  CollectionDef,
  InsertBinding,
  InsertBindingOf,
  DefRow,
  DefInput,
  DefineCollectionsOptions,
  DefinedCollections,
} from "./collections/define-collections.js";
export {
  LunoraOutbox,
  createIndexedDbPersistence,
  createInMemoryPersistence,
  alwaysLeader,
  manualOnlineDetector,
  MAX_PUSH_FRAME_BYTES,
} from "./outbox/index.js";
export type {
  OutboxOptions,
  OutboxPersistence,
  IndexedDbPersistenceOptions,
  ManualOnlineDetector,
  WriteRejectedEvent,
  StorageFailureEvent,
} from "./outbox/index.js";
export type { BoundMutator, MutatorDefinition } from "./mutators/index.js";
export * from "./cache/index.js";
export {
  LunoraError,
  isLunoraError,
  ERROR_CODES,
  TRANSIENT_CODES,
  PROTOCOL_VERSION,
  CLOSE_CODES,
} from "./protocol/index.js";
export type {
  ErrorCode,
  ErrorBody,
  Cursor,
  Row,
  RowKey,
  RowOp,
  Source,
  MutationResult,
  LunoraApi,
  AnyLunoraApi,
} from "./protocol/index.js";
