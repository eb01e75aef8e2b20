import { useState, useSyncExternalStore } from "react";
import { MutatorTracker, type MutatorCallResult } from "../frameworks/mutator-tracker.js";

export type { MutatorCallResult } from "../frameworks/mutator-tracker.js";

/** What {@link useMutator} returns. */
export interface UseMutatorResult<TArgs extends unknown[], TResult> {
  /**
   * Calls the handle (the optimistic change applies at once) and returns what
   * it returns. A failure of the write lands in `error`; nothing needs to
   * catch the returned transaction's promise. A handle that throws
   * synchronously (bad arguments) sets `error` and rethrows.
   */
  mutate: (...args: TArgs) => TResult;
  /** `true` while any call made through this hook is unsettled — overlapping calls are counted, not overwritten. */
  pending: boolean;
  /** The latest failure since the last `mutate()` started or `reset()` ran. */
  error: unknown;
  isError: boolean;
  /** Clears `error`. */
  reset: () => void;
}

/**
 * Wraps a mutator handle (from `bindMutators`, or a table action of
 * `defineCollections`) with React state: `pending` while its writes are
 * unconfirmed and `error` when one fails. `mutate` is stable across renders.
 * The counting and error rules are shared with the Vue, Solid and Svelte
 * bindings (`MutatorTracker`); an unmounted component is not updated (its
 * store subscription is gone).
 *
 * @example
 * ```tsx
 * function SendButton({ channelId }: { channelId: string }) {
 *   const { mutate, pending, error, reset } = useMutator(mutators.sendMessage);
 *   return (
 *     <>
 *       <button disabled={pending} onClick={() => mutate({ id: crypto.randomUUID(), channelId, text: "hi" })}>Send</button>
 *       {error && <span onClick={reset}>{String((error as Error).message)}</span>}
 *     </>
 *   );
 * }
 * ```
 */
export function useMutator<TArgs extends unknown[], TResult extends MutatorCallResult>(
  handle: (...args: TArgs) => TResult,
): UseMutatorResult<TArgs, TResult> {
  const [tracker] = useState(() => new MutatorTracker(handle));
  // The latest handle is called (a new closure every render is the norm).
  tracker.handle = handle;
  const state = useSyncExternalStore(tracker.subscribe, () => tracker.state, () => tracker.state);
  return { mutate: tracker.mutate, pending: state.inFlight > 0, error: state.error, isError: state.isError, reset: tracker.reset };
}
