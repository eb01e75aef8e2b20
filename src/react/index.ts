/**
 * `@lunora/db/react`: the client in context, connection status, mutator
 * state. Reads stay on TanStack DB's `useLiveQuery` (`@tanstack/react-db`).
 *
 * @example
 * ```tsx
 * import { LunoraProvider, useConnectionStatus, useMutator } from "@lunora/db/react";
 * ```
 */
export { LunoraProvider, useLunoraClient } from "./context.js";
export type { LunoraProviderProps } from "./context.js";
export { useConnectionStatus } from "./use-connection-status.js";
export type { UseConnectionStatusOptions } from "./use-connection-status.js";
export { useMutator } from "./use-mutator.js";
export type { UseMutatorResult, MutatorCallResult } from "./use-mutator.js";
export { usePendingWrites } from "./use-pending-writes.js";
export { useSyncState } from "./use-sync-state.js";
export type { SyncState } from "./use-sync-state.js";
