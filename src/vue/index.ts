/**
 * `@lunora/db/vue`: connection status, pending writes and mutator state as
 * Vue refs. Reads stay on TanStack DB's `useLiveQuery` (`@tanstack/vue-db`).
 * The client comes from an argument or from {@link provideLunoraClient}.
 *
 * @example
 * ```ts
 * import { provideLunoraClient, useConnectionStatus, useMutator, usePendingWrites } from "@lunora/db/vue";
 * ```
 */
import { getCurrentScope, hasInjectionContext, inject, onScopeDispose, provide, readonly, shallowRef, type InjectionKey, type Ref } from "vue";
import type { LunoraClient } from "../client/lunora-client.js";
import type { ConnectionStatus } from "../client/status.js";
import { connectionStatusOf, pendingWritesOf, type ClientValue, type ConnectionStatusOptions } from "../frameworks/client-state.js";
import { MutatorTracker, type MutatorCallResult } from "../frameworks/mutator-tracker.js";
import { LunoraError, type AnyLunoraApi, type LunoraApi } from "../protocol/index.js";

export type { MutatorCallResult } from "../frameworks/mutator-tracker.js";

const lunoraClientKey: InjectionKey<LunoraClient<any>> = Symbol("lunora-client");

/**
 * Makes `client` the one the composables of this component's descendants
 * use (Vue's `provide`). Call it in a component's `setup()`; for the whole
 * app use `app.provide(lunoraClientInjectionKey, client)`. Build the client
 * once (it owns sockets and the query cache).
 *
 * @example
 * ```ts
 * const client = new LunoraClient({ host: "my-app.workers.dev", party: "chat-room" });
 * createApp(App).provide(lunoraClientInjectionKey, client).mount("#app");
 * ```
 */
export function provideLunoraClient(client: LunoraClient<any>): void {
  provide(lunoraClientKey, client);
}

/** The injection key of the client, for `app.provide(lunoraClientInjectionKey, client)`. */
export const lunoraClientInjectionKey = lunoraClientKey;

/**
 * The provided client. Throws `INVALID_ARGS` when none was provided (a
 * wiring bug, better loud than silent).
 */
export function useLunoraClient<Api extends LunoraApi = AnyLunoraApi>(): LunoraClient<Api> {
  const client = hasInjectionContext() ? inject(lunoraClientKey, undefined) : undefined;
  if (!client) throw new LunoraError("INVALID_ARGS", "useLunoraClient: no client provided (provideLunoraClient or app.provide(lunoraClientInjectionKey, client))");
  return client as LunoraClient<Api>;
}

/** Options of {@link useConnectionStatus}. */
export interface UseConnectionStatusOptions extends ConnectionStatusOptions {
  /** A client other than the provided one. */
  client?: LunoraClient<any>;
}

/**
 * The client's aggregate connection status (`idle → connecting → connected
 * → offline`), or one room's with `{ room }`, as a read-only ref updated on
 * every transition. Stops listening when the calling component (effect
 * scope) is disposed.
 *
 * @example
 * ```vue
 * <script setup lang="ts">
 * const status = useConnectionStatus();
 * </script>
 * <template><span :data-status="status">{{ status === "connected" ? "Live" : "Offline" }}</span></template>
 * ```
 */
export function useConnectionStatus(options: UseConnectionStatusOptions = {}): Readonly<Ref<ConnectionStatus>> {
  return refOf(connectionStatusOf(options.client ?? useLunoraClient(), options));
}

/**
 * How many writes of the signed-in identity are queued or in flight (not
 * yet confirmed by the room), including offline writes restored after a
 * reload and those other tabs left queued. `0` on a client without the
 * write path.
 *
 * @example
 * ```vue
 * <script setup lang="ts">
 * const pending = usePendingWrites();
 * </script>
 * <template><span v-if="pending > 0">{{ pending }} unsaved</span></template>
 * ```
 */
export function usePendingWrites(client?: LunoraClient<any>): Readonly<Ref<number>> {
  return refOf(pendingWritesOf(client ?? useLunoraClient()));
}

/** What {@link useMutator} returns. */
export interface UseMutatorResult<TArgs extends unknown[], TResult> {
  /**
   * Calls the handle (the optimistic change applies at once) and returns what
   * it returns. A failure of the write lands in `error`; nothing needs to
   * catch the returned transaction's promise. A handle that throws
   * synchronously (bad arguments) sets `error` and rethrows.
   */
  mutate: (...args: TArgs) => TResult;
  /** `true` while any call made through this composable is unsettled — overlapping calls are counted, not overwritten. */
  pending: Readonly<Ref<boolean>>;
  /** The latest failure since the last `mutate()` started or `reset()` ran. */
  error: Readonly<Ref<unknown>>;
  isError: Readonly<Ref<boolean>>;
  /** Clears `error`. */
  reset: () => void;
}

/**
 * Wraps a mutator handle (from `bindMutators`, or a table action of
 * `defineCollections`) with refs: `pending` while its writes are
 * unconfirmed and `error` when one fails.
 *
 * @example
 * ```vue
 * <script setup lang="ts">
 * const { mutate, pending, error, reset } = useMutator(mutators.sendMessage);
 * </script>
 * <template>
 *   <button :disabled="pending" @click="mutate({ id: crypto.randomUUID(), channelId, text: 'hi' })">Send</button>
 *   <span v-if="error" @click="reset">{{ (error as Error).message }}</span>
 * </template>
 * ```
 */
export function useMutator<TArgs extends unknown[], TResult extends MutatorCallResult>(
  handle: (...args: TArgs) => TResult,
): UseMutatorResult<TArgs, TResult> {
  const tracker = new MutatorTracker(handle);
  const pending = shallowRef(false);
  const error = shallowRef<unknown>(undefined);
  const isError = shallowRef(false);
  tracker.subscribe((state) => {
    pending.value = state.inFlight > 0;
    error.value = state.error;
    isError.value = state.isError;
  });
  if (getCurrentScope()) onScopeDispose(() => tracker.dispose());
  return { mutate: tracker.mutate, pending: readonly(pending) as Readonly<Ref<boolean>>, error: readonly(error) as Readonly<Ref<unknown>>, isError: readonly(isError) as Readonly<Ref<boolean>>, reset: tracker.reset };
}

/** A read-only ref following a client value while the current effect scope lives. */
function refOf<T>(value: ClientValue<T>): Readonly<Ref<T>> {
  const current = shallowRef(value.read()) as Ref<T>;
  const stop = value.subscribe(() => {
    current.value = value.read();
  });
  if (getCurrentScope()) onScopeDispose(stop);
  return readonly(current) as Readonly<Ref<T>>;
}
