import { useSyncExternalStore } from "react";
import type { LunoraCollectionUtils } from "../collections/types.js";

/** What {@link useSyncState} reports for a collection. */
export interface SyncState {
  /**
   * `false` while the rows are not (yet) confirmed by the room — in
   * particular rows restored from the query cache before the first poke
   * after a reload. Show "syncing…" then.
   */
  isAuthoritative: boolean;
  /** `Date.now()` of the last poke the rows reflect (for cached rows: when they were cached). */
  lastSyncedAt: number | undefined;
}

/**
 * A Lunora collection's sync state, re-rendering when it changes. Reads
 * stay on TanStack's `useLiveQuery`; this is the "is it live yet" beside them.
 *
 * @example
 * ```tsx
 * const { data } = useLiveQuery((q) => q.from({ m: messages }));
 * const { isAuthoritative, lastSyncedAt } = useSyncState(messages);
 * return <>{!isAuthoritative && <span>syncing… (as of {new Date(lastSyncedAt ?? 0).toLocaleTimeString()})</span>}</>;
 * ```
 */
export function useSyncState(collection: { utils: LunoraCollectionUtils }): SyncState {
  const { utils } = collection;
  const isAuthoritative = useSyncExternalStore(utils.onSyncStateChange, utils.isAuthoritative, () => false);
  const lastSyncedAt = useSyncExternalStore(utils.onSyncStateChange, utils.lastSyncedAt, () => undefined);
  return { isAuthoritative, lastSyncedAt };
}
