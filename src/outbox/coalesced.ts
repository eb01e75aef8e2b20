import { reportListenerError } from "../client/listeners.js";

/**
 * `run` as a coalesced task: one run at a time, and calls made while it runs
 * ask for exactly one more run after it, however many they are (a re-count
 * of storage, an adoption pass, a room's send). Nothing runs, and nothing
 * more is repeated, while `proceed()` is false. A failure goes to the
 * host's error reporting (the caller has gone on already).
 */
export function coalesced(run: () => Promise<void>, proceed: () => boolean): () => void {
  let running = false;
  let again = false;
  return () => {
    if (!proceed()) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    void (async () => {
      try {
        do {
          again = false;
          await run();
        } while (again && proceed());
      } catch (error) {
        reportListenerError(error);
      } finally {
        running = false;
      }
    })();
  };
}
