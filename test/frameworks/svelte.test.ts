/**
 * `@lunora/db/svelte` with Svelte's own stores (`svelte/store`, what `$store`
 * compiles to in Svelte 4 and 5) against the real fixture room. Values are
 * read through a subscription that records what it was sent, so a store
 * that changes without notifying fails.
 */
import { get, type Readable } from "svelte/store";
import { expect, test } from "vitest";
import { LunoraClient } from "../../src/index.js";
import { connectionStatus, mutator, pendingWrites } from "../../src/svelte/index.js";
import { describeFrameworkBinding, type Observed } from "./binding-scenarios.js";

/** The last value a subscriber of `store` was sent. */
function subscribed<T>(store: Readable<T>): { current: () => T; unsubscribe: () => void } {
  let seen!: T;
  const unsubscribe = store.subscribe((value) => {
    seen = value;
  });
  return { current: () => seen, unsubscribe };
}

function observe<T>(store: Readable<T>): Observed<T> {
  const { current, unsubscribe } = subscribed(store);
  return { current, dispose: unsubscribe };
}

describeFrameworkBinding("svelte", {
  mutator(handle) {
    const stores = mutator(handle);
    const pending = subscribed(stores.pending);
    const error = subscribed(stores.error);
    const isError = subscribed(stores.isError);
    return {
      mutate: stores.mutate,
      reset: stores.reset,
      pending: pending.current,
      error: error.current,
      isError: isError.current,
      dispose: () => [pending, error, isError].forEach((s) => s.unsubscribe()),
    };
  },
  connectionStatus: (client, options) => observe(connectionStatus(client, options)),
  pendingWrites: (client) => observe(pendingWrites(client)),
});

test("svelte: a store without subscribers reads the current value, and stops listening after the last unsubscribes", () => {
  const client = new LunoraClient({ host: "127.0.0.1:9", party: "room" });
  const unsaved = pendingWrites(client);
  client.reportPendingWrites(2);
  expect(get(unsaved)).toBe(2);
  const seen: number[] = [];
  const unsubscribe = unsaved.subscribe((count) => seen.push(count));
  client.reportPendingWrites(3);
  unsubscribe();
  client.reportPendingWrites(4);
  expect(seen).toEqual([2, 3]);
  expect(get(unsaved)).toBe(4);
  client.close();
});

test("svelte: get(pending) of a mutator nobody subscribes to is right", async () => {
  let settle!: () => void;
  const promise = new Promise<void>((resolve) => (settle = resolve));
  const stores = mutator(() => ({ isPersisted: { promise } }));
  stores.mutate();
  expect(get(stores.pending)).toBe(true);
  settle();
  await promise;
  await Promise.resolve();
  expect(get(stores.pending)).toBe(false);
});
