import { useMemo, useSyncExternalStore } from "react";
import type { LunoraClient } from "../client/lunora-client.js";
import { pendingWritesOf } from "../frameworks/client-state.js";
import { useClientOrContext } from "./context.js";

/**
 * How many writes of the signed-in identity are queued or in flight (not yet
 * confirmed by the room): those of this tab and those other tabs of the
 * origin left queued in the shared outbox storage, including writes made
 * offline and restored after a reload — so no tab shows "all saved" while a
 * write is undelivered anywhere. `0` on a client without the write path,
 * and while server rendering.
 *
 * @example
 * ```tsx
 * function UnsavedBadge() {
 *   const pending = usePendingWrites();
 *   return pending > 0 ? <span>{pending} unsaved</span> : null;
 * }
 * ```
 */
export function usePendingWrites(client?: LunoraClient<any>): number {
  const chosen = useClientOrContext(client);
  const pending = useMemo(() => pendingWritesOf(chosen), [chosen]);
  return useSyncExternalStore(pending.subscribe, pending.read, getServerSnapshot);
}

function getServerSnapshot(): number {
  return 0;
}
