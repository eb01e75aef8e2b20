/**
 * `@lunora/db/solid`: connection status, pending writes and mutator state as
 * Solid signals (accessors). Reads stay on TanStack DB's `useLiveQuery`
 * (`@tanstack/solid-db`). Each primitive takes the client explicitly and
 * stops listening when its owner (component or `createRoot`) is disposed.
 *
 * @example
 * ```ts
 * import { createConnectionStatus, createMutator, createPendingWrites } from "@lunora/db/solid";
 * ```
 */
import { createSignal, getOwner, onCleanup, type Accessor } from "solid-js";
import type { LunoraClient } from "../client/lunora-client.js";
import type { ConnectionStatus } from "../client/status.js";
import { connectionStatusOf, pendingWritesOf, type ClientValue, type ConnectionStatusOptions } from "../frameworks/client-state.js";
import { MutatorTracker, type MutatorCallResult, type MutatorState } from "../frameworks/mutator-tracker.js";

export type { MutatorCallResult } from "../frameworks/mutator-tracker.js";
export type { ConnectionStatusOptions } from "../frameworks/client-state.js";

/**
 * The client's aggregate connection status (`idle → connecting → connected
 * → offline`), or one room's with `{ room }`, as an accessor updated on
 * every transition.
 *
 * @example
 * ```tsx
 * function SyncBadge() {
 *   const status = createConnectionStatus(client);
 *   return <span data-status={status()}>{status() === "connected" ? "Live" : "Offline"}</span>;
 * }
 * ```
 */
export function createConnectionStatus(client: LunoraClient<any>, options: ConnectionStatusOptions = {}): Accessor<ConnectionStatus> {
  return accessorOf(connectionStatusOf(client, options));
}

/**
 * How many writes of the signed-in identity are queued or in flight (not
 * yet confirmed by the room), including offline writes restored after a
 * reload and those other tabs left queued. `0` on a client without the
 * write path.
 *
 * @example
 * ```tsx
 * const pending = createPendingWrites(client);
 * return <Show when={pending() > 0}><span>{pending()} unsaved</span></Show>;
 * ```
 */
export function createPendingWrites(client: LunoraClient<any>): Accessor<number> {
  return accessorOf(pendingWritesOf(client));
}

/** What {@link createMutator} returns. */
export interface CreateMutatorResult<TArgs extends unknown[], TResult> {
  /**
   * Calls the handle (the optimistic change applies at once) and returns what
   * it returns. A failure of the write lands in `error`; nothing needs to
   * catch the returned transaction's promise. A handle that throws
   * synchronously (bad arguments) sets `error` and rethrows.
   */
  mutate: (...args: TArgs) => TResult;
  /** `true` while any call made through this mutator is unsettled — overlapping calls are counted, not overwritten. */
  pending: Accessor<boolean>;
  /** The latest failure since the last `mutate()` started or `reset()` ran. */
  error: Accessor<unknown>;
  isError: Accessor<boolean>;
  /** Clears `error`. */
  reset: () => void;
}

/**
 * Wraps a mutator handle (from `bindMutators`, or a table action of
 * `defineCollections`) with signals: `pending` while its writes are
 * unconfirmed and `error` when one fails.
 *
 * @example
 * ```tsx
 * function SendButton(props: { channelId: string }) {
 *   const send = createMutator(mutators.sendMessage);
 *   return (
 *     <>
 *       <button disabled={send.pending()} onClick={() => send.mutate({ id: crypto.randomUUID(), channelId: props.channelId, text: "hi" })}>Send</button>
 *       <Show when={send.isError()}><span onClick={send.reset}>{String((send.error() as Error).message)}</span></Show>
 *     </>
 *   );
 * }
 * ```
 */
export function createMutator<TArgs extends unknown[], TResult extends MutatorCallResult>(
  handle: (...args: TArgs) => TResult,
): CreateMutatorResult<TArgs, TResult> {
  const tracker = new MutatorTracker(handle);
  // One signal for the whole state: pending and error change together, and
  // an error object must be stored as is (a function would be called by a setter).
  const [state, setState] = createSignal<MutatorState>(tracker.state, { equals: false });
  tracker.subscribe((next) => setState(() => next));
  if (getOwner()) onCleanup(() => tracker.dispose());
  return {
    mutate: tracker.mutate,
    pending: () => state().inFlight > 0,
    error: () => state().error,
    isError: () => state().isError,
    reset: tracker.reset,
  };
}

/** An accessor following a client value while the current owner lives. */
function accessorOf<T>(value: ClientValue<T>): Accessor<T> {
  const [current, setCurrent] = createSignal<T>(value.read());
  const stop = value.subscribe(() => setCurrent(() => value.read()));
  if (getOwner()) onCleanup(stop);
  return current;
}
