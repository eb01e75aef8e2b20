/**
 * `@lunora/db/vue` with Vue's own reactivity (an effect scope, as a
 * component's setup has) against the real fixture room. Values are read
 * through a synchronous watcher, so a ref that changes without triggering
 * fails.
 */
import { effectScope, watch, type Ref } from "vue";
import { describe, expect, test } from "vitest";
import { LunoraClient } from "../../src/index.js";
import { useConnectionStatus, useLunoraClient, useMutator, usePendingWrites } from "../../src/vue/index.js";
import { describeFrameworkBinding, type Observed } from "./binding-scenarios.js";

/** Runs `setup` in a fresh effect scope; the scope's disposal is the component's unmount. */
function inScope<T>(setup: () => T): { value: T; dispose: () => void } {
  const scope = effectScope();
  const value = scope.run(setup)!;
  return { value, dispose: () => scope.stop() };
}

/** The last value a synchronous watcher of `ref` saw. */
function watched<T>(ref: Readonly<Ref<T>>): () => T {
  let seen = ref.value;
  watch(ref, (value) => (seen = value), { flush: "sync" });
  return () => seen;
}

function observe<T>(setup: () => Readonly<Ref<T>>): Observed<T> {
  const { value, dispose } = inScope(() => watched(setup()));
  return { current: value, dispose };
}

describeFrameworkBinding("vue", {
  mutator(handle) {
    const { value, dispose } = inScope(() => {
      const result = useMutator(handle);
      return { ...result, seenPending: watched(result.pending), seenError: watched(result.error), seenIsError: watched(result.isError) };
    });
    return { mutate: value.mutate, reset: value.reset, pending: value.seenPending, error: value.seenError, isError: value.seenIsError, dispose };
  },
  connectionStatus: (client, options) => observe(() => useConnectionStatus({ ...options, client })),
  pendingWrites: (client) => observe(() => usePendingWrites(client)),
});

describe("vue: client injection", () => {
  test("useLunoraClient without a provided client fails with a coded error", () => {
    expect(() => inScope(() => useLunoraClient())).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
  });

  test("a disposed scope stops following the client", () => {
    const client = new LunoraClient({ host: "127.0.0.1:9", party: "room" });
    const { value: pending, dispose } = inScope(() => usePendingWrites(client));
    client.reportPendingWrites(2);
    expect(pending.value).toBe(2);
    dispose();
    client.reportPendingWrites(5);
    expect(pending.value).toBe(2);
    client.close();
  });
});
