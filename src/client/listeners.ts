/**
 * A set of callbacks. A listener that throws must neither stop the others nor
 * unwind into the socket's message handler (a throw there would skip the rest
 * of a poke), so each call is isolated. The failure goes to the host's
 * `reportError` (browsers, workers) or `console.error` (Node 20 has no
 * `reportError`, and an uncaught throw there would end the process).
 */
export class Listeners<Args extends unknown[]> {
  readonly #listeners = new Set<(...args: Args) => unknown>();

  add(listener: (...args: Args) => unknown): () => void {
    // Wrap so adding the same function twice yields two independent registrations.
    const entry = (...args: Args) => listener(...args);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  emit(...args: Args): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(...args);
      } catch (error) {
        reportListenerError(error);
      }
    }
  }

  /** Calls every listener and waits for the promises they return (failures are reported, not thrown). */
  async emitAndWait(...args: Args): Promise<void> {
    const pending: Promise<unknown>[] = [];
    for (const listener of [...this.#listeners]) {
      try {
        const result = listener(...args);
        if (result instanceof Promise) pending.push(result.catch(reportListenerError));
      } catch (error) {
        reportListenerError(error);
      }
    }
    await Promise.all(pending);
  }

  get size(): number {
    return this.#listeners.size;
  }

  clear(): void {
    this.#listeners.clear();
  }
}

/** Reports an exception thrown by user code we called, without rethrowing it. */
export function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("[lunora] a listener threw:", error);
}
