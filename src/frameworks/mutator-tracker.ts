/**
 * The framework-independent state behind `useMutator` (React, Vue),
 * `createMutator` (Solid) and `mutator` (Svelte): how many calls are in
 * flight and the latest failure. Each binding only maps this state onto its
 * framework's reactive primitive (state, refs, signals, stores), so the
 * counting and error rules live here once.
 */

/** What a mutator handle returns: a TanStack DB `Transaction`, or `{ transaction }` (table actions). */
export type MutatorCallResult = { isPersisted: { promise: Promise<unknown> } } | { transaction: { isPersisted: { promise: Promise<unknown> } } };

/** A snapshot of a mutator's state. A new object on every change (so React can compare by identity). */
export interface MutatorState {
  /** Calls whose write has not settled yet. */
  readonly inFlight: number;
  /** The latest failure since the last call started or `reset()` ran. */
  readonly error: unknown;
  readonly isError: boolean;
}

const IDLE: MutatorState = Object.freeze({ inFlight: 0, error: undefined, isError: false });

/**
 * Counts the unsettled calls of one mutator handle and keeps its latest
 * error. `pending` must be a count, not a flag: with two overlapping calls,
 * the first one settling must not report "saved" while the second is still
 * unconfirmed.
 */
export class MutatorTracker<TArgs extends unknown[], TResult> {
  #state: MutatorState = IDLE;
  readonly #listeners = new Set<(state: MutatorState) => void>();
  #disposed = false;

  /** `handle` is read on every call, so a binding may swap it (React re-renders). */
  constructor(public handle: (...args: TArgs) => TResult) {}

  get state(): MutatorState {
    return this.#state;
  }

  /** Calls `listener` on every change of {@link state}. Returns a function that removes it. */
  subscribe = (listener: (state: MutatorState) => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /**
   * Calls the handle (its optimistic change applies at once) and returns what
   * it returns. The write's failure lands in `error`, so nobody has to catch
   * the returned transaction's promise. A handle that throws synchronously
   * (bad arguments) sets `error` and rethrows: the caller asked for something
   * that never started.
   */
  mutate = (...args: TArgs): TResult => {
    let result: TResult;
    try {
      result = this.handle(...args);
    } catch (error) {
      this.#set({ ...this.#state, error, isError: true });
      throw error;
    }
    this.#set({ inFlight: this.#state.inFlight + 1, error: undefined, isError: false });
    persistedPromise(result).then(
      () => this.#settle(false),
      (error: unknown) => this.#settle(true, error),
    );
    return result;
  };

  /** Clears the error (calls in flight stay counted). */
  reset = (): void => {
    if (this.#state.isError || this.#state.error !== undefined) this.#set({ ...this.#state, error: undefined, isError: false });
  };

  /** Stops reporting: a component that unmounted must not be updated by a write settling later. */
  dispose(): void {
    this.#disposed = true;
    this.#listeners.clear();
  }

  #settle(failed: boolean, error?: unknown): void {
    const s = this.#state;
    this.#set({ inFlight: s.inFlight - 1, error: failed ? error : s.error, isError: failed || s.isError });
  }

  #set(state: MutatorState): void {
    if (this.#disposed) return;
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }
}

/** The promise that settles with the write; a handle that returned something else counts as settled. */
function persistedPromise(result: unknown): Promise<unknown> {
  const value = result as Partial<{ isPersisted: { promise?: unknown }; transaction: { isPersisted?: { promise?: unknown } } }> | undefined;
  const promise = value?.isPersisted?.promise ?? value?.transaction?.isPersisted?.promise;
  return promise instanceof Promise ? promise : Promise.resolve(result);
}
