/**
 * `@lunora/db/svelte`: connection status, pending writes and mutator state as
 * Svelte stores (`svelte/store`), so they work the same in Svelte 4 and 5
 * (`$status` in a component, `get()` or `subscribe()` elsewhere) and need no
 * compiled component. Reads stay on TanStack DB's `useLiveQuery`
 * (`@tanstack/svelte-db`). A store listens to the client only while it has
 * subscribers.
 *
 * @example
 * ```ts
 * import { connectionStatus, mutator, pendingWrites } from "@lunora/db/svelte";
 * ```
 */
import { derived, readable, type Readable } from "svelte/store";
import type { LunoraClient } from "../client/lunora-client.js";
import type { ConnectionStatus } from "../client/status.js";
import { connectionStatusOf, pendingWritesOf, type ClientValue, type ConnectionStatusOptions } from "../frameworks/client-state.js";
import { MutatorTracker, type MutatorCallResult, type MutatorState } from "../frameworks/mutator-tracker.js";

export type { MutatorCallResult } from "../frameworks/mutator-tracker.js";
export type { ConnectionStatusOptions } from "../frameworks/client-state.js";

/**
 * The client's aggregate connection status (`idle → connecting → connected
 * → offline`), or one room's with `{ room }`, as a readable store.
 *
 * @example
 * ```svelte
 * <script lang="ts">
 *   const status = connectionStatus(client);
 * </script>
 * <span data-status={$status}>{$status === "connected" ? "Live" : "Offline"}</span>
 * ```
 */
export function connectionStatus(client: LunoraClient<any>, options: ConnectionStatusOptions = {}): Readable<ConnectionStatus> {
  return storeOf(connectionStatusOf(client, options));
}

/**
 * How many writes of the signed-in identity are queued or in flight (not
 * yet confirmed by the room), including offline writes restored after a
 * reload and those other tabs left queued. `0` on a client without the
 * write path.
 *
 * @example
 * ```svelte
 * <script lang="ts">
 *   const unsaved = pendingWrites(client);
 * </script>
 * {#if $unsaved > 0}<span>{$unsaved} unsaved</span>{/if}
 * ```
 */
export function pendingWrites(client: LunoraClient<any>): Readable<number> {
  return storeOf(pendingWritesOf(client));
}

/** What {@link mutator} returns. */
export interface MutatorStores<TArgs extends unknown[], TResult> {
  /**
   * Calls the handle (the optimistic change applies at once) and returns what
   * it returns. A failure of the write lands in `error`; nothing needs to
   * catch the returned transaction's promise. A handle that throws
   * synchronously (bad arguments) sets `error` and rethrows.
   */
  mutate: (...args: TArgs) => TResult;
  /** `true` while any call made through this mutator is unsettled — overlapping calls are counted, not overwritten. */
  pending: Readable<boolean>;
  /** The latest failure since the last `mutate()` started or `reset()` ran. */
  error: Readable<unknown>;
  isError: Readable<boolean>;
  /** Clears `error`. */
  reset: () => void;
}

/**
 * Wraps a mutator handle (from `bindMutators`, or a table action of
 * `defineCollections`) with stores: `pending` while its writes are
 * unconfirmed and `error` when one fails. The state is kept whether or not
 * a store has subscribers, so `get(pending)` is right at any time.
 *
 * @example
 * ```svelte
 * <script lang="ts">
 *   const { mutate, pending, error, reset } = mutator(mutators.sendMessage);
 * </script>
 * <button disabled={$pending} on:click={() => mutate({ id: crypto.randomUUID(), channelId, text: "hi" })}>Send</button>
 * {#if $error}<span on:click={reset}>{String($error.message)}</span>{/if}
 * ```
 */
export function mutator<TArgs extends unknown[], TResult extends MutatorCallResult>(
  handle: (...args: TArgs) => TResult,
): MutatorStores<TArgs, TResult> {
  const tracker = new MutatorTracker(handle);
  const state = storeOf<MutatorState>({ read: () => tracker.state, subscribe: (onChange) => tracker.subscribe(onChange) });
  return {
    mutate: tracker.mutate,
    pending: derived(state, (s) => s.inFlight > 0),
    error: derived(state, (s) => s.error),
    isError: derived(state, (s) => s.isError),
    reset: tracker.reset,
  };
}

/** A readable store of a value: listens while it has subscribers, and reads afresh on the first one. */
function storeOf<T>(value: ClientValue<T>): Readable<T> {
  return readable(value.read(), (set) => {
    set(value.read());
    return value.subscribe(() => set(value.read()));
  });
}
