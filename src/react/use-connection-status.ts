import { useMemo, useSyncExternalStore } from "react";
import type { LunoraClient } from "../client/lunora-client.js";
import type { ConnectionStatus } from "../client/status.js";
import { connectionStatusOf } from "../frameworks/client-state.js";
import { useClientOrContext } from "./context.js";

/** Options of {@link useConnectionStatus}. */
export interface UseConnectionStatusOptions {
  /** One room's status instead of the aggregate. */
  room?: string;
  /** The room's party; defaults to the client's. */
  party?: string;
  /** A client other than the provider's. */
  client?: LunoraClient<any>;
}

/**
 * The client's aggregate connection status (`idle → connecting → connected
 * → offline`), or one room's with `{ room }`. Read synchronously and updated
 * on every transition (`useSyncExternalStore`, so no render sees a torn value).
 * Server rendering reports `idle`.
 *
 * @example
 * ```tsx
 * function SyncBadge() {
 *   const status = useConnectionStatus();
 *   return <span data-status={status}>{status === "connected" ? "Live" : "Offline"}</span>;
 * }
 * ```
 */
export function useConnectionStatus(options: UseConnectionStatusOptions = {}): ConnectionStatus {
  const client = useClientOrContext(options.client);
  const { room, party } = options;
  const status = useMemo(() => connectionStatusOf(client, { room, party }), [client, room, party]);
  return useSyncExternalStore(status.subscribe, status.read, getServerSnapshot);
}

function getServerSnapshot(): ConnectionStatus {
  return "idle";
}
