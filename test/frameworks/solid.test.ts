/**
 * `@lunora/db/solid` with Solid's own reactivity (`createRoot`, as a
 * component's owner is) against the real fixture room. Values are read
 * through a `createComputed` that records what it saw, so a signal that
 * changes without notifying fails. Solid's Node export is its server build,
 * where signals never notify (it renders once to a string), so this file
 * swaps in the browser build, the one an app's bundler picks — for this
 * file and for src/solid, which it imports.
 */
import { createComputed, createRoot, type Accessor } from "solid-js";
import { expect, test, vi } from "vitest";
import { LunoraClient } from "../../src/index.js";
import { createConnectionStatus, createMutator, createPendingWrites } from "../../src/solid/index.js";
import { describeFrameworkBinding, type Observed } from "./binding-scenarios.js";

// The browser build has the same API as the package's types (it ships no
// declarations of its own under dist/).
// @ts-expect-error TS7016: solid-js/dist/solid.js has no .d.ts
vi.mock("solid-js", () => import("solid-js/dist/solid.js"));

/** Runs `setup` under a fresh root; disposing the root is the component's unmount. */
function inRoot<T>(setup: () => T): { value: T; dispose: () => void } {
  let dispose!: () => void;
  const value = createRoot((disposeRoot) => {
    dispose = disposeRoot;
    return setup();
  });
  return { value, dispose };
}

/** The last value a computation tracking `accessor` saw. */
function watched<T>(accessor: Accessor<T>): () => T {
  let seen!: T;
  createComputed(() => {
    seen = accessor();
  });
  return () => seen;
}

function observe<T>(setup: () => Accessor<T>): Observed<T> {
  const { value, dispose } = inRoot(() => watched(setup()));
  return { current: value, dispose };
}

describeFrameworkBinding("solid", {
  mutator(handle) {
    const { value, dispose } = inRoot(() => {
      const result = createMutator(handle);
      return { ...result, seenPending: watched(result.pending), seenError: watched(result.error), seenIsError: watched(result.isError) };
    });
    return { mutate: value.mutate, reset: value.reset, pending: value.seenPending, error: value.seenError, isError: value.seenIsError, dispose };
  },
  connectionStatus: (client, options) => observe(() => createConnectionStatus(client, options)),
  pendingWrites: (client) => observe(() => createPendingWrites(client)),
});

test("solid: a disposed root stops following the client", () => {
  const client = new LunoraClient({ host: "127.0.0.1:9", party: "room" });
  const { value: pending, dispose } = inRoot(() => createPendingWrites(client));
  client.reportPendingWrites(2);
  expect(pending()).toBe(2);
  dispose();
  client.reportPendingWrites(5);
  expect(pending()).toBe(2);
  client.close();
});
