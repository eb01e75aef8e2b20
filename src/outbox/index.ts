/** The durable write outbox (on `@tanstack/offline-transactions`) shared by `defineCollections` and `bindMutators`. */
export { LunoraOutbox, outboxFor } from "./outbox.js";
export type { OutboxOptions, WriteRejectedEvent, StorageFailureEvent, WriteRequest } from "./outbox.js";
export { createIndexedDbPersistence, createInMemoryPersistence } from "./persistence.js";
export type { OutboxPersistence, IndexedDbPersistenceOptions } from "./persistence.js";
export { alwaysLeader, manualOnlineDetector } from "./environment.js";
export type { ManualOnlineDetector } from "./environment.js";
export { MAX_PUSH_FRAME_BYTES } from "./write.js";
