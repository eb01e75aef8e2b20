import { useCallback, useSyncExternalStore } from "react";
import type { LunoraClient } from "../client/lunora-client.js";
import { useClientOrContext } from "./context.js";

/** What the write path adds to the client: the number of writes not yet confirmed, and its change event. */
interface PendingWritesSource {
  readonly pendingWrites?: number;
  onPendingWritesChange?(listener: (count: number) => void): () => void;
}

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
  const source = useClientOrContext(client) as unknown as PendingWritesSource;
  const subscribe = useCallback(
    (onChange: () => void) => source.onPendingWritesChange?.(() => onChange()) ?? noop,
    [source],
  );
  const getSnapshot = useCallback(() => source.pendingWrites ?? 0, [source]);
  return useSyncExternalStore(subscribe, getSnapshot, getServerSnapshot);
}

function noop(): void {}

function getServerSnapshot(): number {
  return 0;
}
