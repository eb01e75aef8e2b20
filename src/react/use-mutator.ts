import { useCallback, useEffect, useRef, useState } from "react";

/** What a mutator handle returns: a TanStack DB `Transaction`, or `{ transaction }` (table actions). */
export type MutatorCallResult = { isPersisted: { promise: Promise<unknown> } } | { transaction: { isPersisted: { promise: Promise<unknown> } } };

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

interface MutatorState {
  inFlight: number;
  error: unknown;
  isError: boolean;
}

/**
 * Wraps a mutator handle (from `bindMutators`, or a table action of
 * `defineCollections`) with React state: `pending` while its writes are
 * unconfirmed and `error` when one fails. `mutate` is stable across renders.
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
  const [state, setState] = useState<MutatorState>({ inFlight: 0, error: undefined, isError: false });
  const handleRef = useRef(handle);
  handleRef.current = handle;
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const mutate = useCallback((...args: TArgs): TResult => {
    let result: TResult;
    try {
      result = handleRef.current(...args);
    } catch (error) {
      setState((s) => ({ ...s, error, isError: true }));
      throw error;
    }
    setState((s) => ({ inFlight: s.inFlight + 1, error: undefined, isError: false }));
    const settle = (failed: boolean, error?: unknown) => {
      if (!mounted.current) return;
      setState((s) => ({
        inFlight: s.inFlight - 1,
        error: failed ? error : s.error,
        isError: failed || s.isError,
      }));
    };
    persistedPromise(result).then(
      () => settle(false),
      (error: unknown) => settle(true, error),
    );
    return result;
  }, []);

  const reset = useCallback(() => setState((s) => ({ ...s, error: undefined, isError: false })), []);

  return { mutate, pending: state.inFlight > 0, error: state.error, isError: state.isError, reset };
}

/** The promise that settles with the write; a handle that returned something else counts as settled. */
function persistedPromise(result: MutatorCallResult): Promise<unknown> {
  const value = result as Partial<{ isPersisted: { promise?: unknown }; transaction: { isPersisted?: { promise?: unknown } } }> | undefined;
  const promise = value?.isPersisted?.promise ?? value?.transaction?.isPersisted?.promise;
  return promise instanceof Promise ? promise : Promise.resolve(result);
}
