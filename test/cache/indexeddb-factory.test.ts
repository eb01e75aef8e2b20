/**
 * The IndexedDB query cache given only a factory: no `fake-indexeddb/auto`,
 * so `indexedDB`, `IDBRequest`, `IDBTransaction`… are NOT globals here — the
 * situation of a test running several "devices" in one process, each with
 * its own `new IDBFactory()`.
 */
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, test } from "vitest";
import { createIndexedDbQueryCache, type QueryCacheStatus } from "../../src/cache/index.js";
import type { LunoraError } from "../../src/protocol/index.js";

const view = (title: string) => ({ cursor: { seq: 4, epoch: "e1" }, rows: [["i1", { id: "i1", title }]] as Array<[string, Record<string, unknown>]> });
const identity = () => Promise.resolve("user-a");

describe("createIndexedDbQueryCache({ indexedDB }) without IndexedDB globals", () => {
  test("the test really runs without the globals", () => {
    expect("indexedDB" in globalThis).toBe(false);
    expect("IDBRequest" in globalThis).toBe(false);
  });

  test("opens, writes and hydrates the next session; two factories are two devices", async () => {
    const device = new IDBFactory();
    const errors: LunoraError[] = [];
    const first = createIndexedDbQueryCache({ indexedDB: device, onError: (error) => errors.push(error) });
    first.attach(identity);
    first.schedule("view-1", () => view("cached"));
    await first.flush();
    expect(first.status).toBe("ready");
    await first.close();

    const reload = createIndexedDbQueryCache({ indexedDB: device, onError: (error) => errors.push(error) });
    reload.attach(identity);
    expect(await reload.read("view-1")).toMatchObject({ identity: "user-a", serverCursor: 4, rows: [["i1", { id: "i1", title: "cached" }]] });

    const otherDevice = createIndexedDbQueryCache({ indexedDB: new IDBFactory(), onError: (error) => errors.push(error) });
    otherDevice.attach(identity);
    expect(await otherDevice.read("view-1")).toBeUndefined();
    expect(otherDevice.status).toBe("ready");
    expect(errors).toEqual([]);
    await reload.close();
    await otherDevice.close();
  });

  test("a cache that cannot open says so: status `failed` with a coded error, and a status listener hears it", async () => {
    const reported: LunoraError[] = [];
    const cache = createIndexedDbQueryCache({ onError: (error) => reported.push(error) }); // no factory, no global
    const statuses: Array<[QueryCacheStatus, string | undefined]> = [];
    cache.onStatusChange((status, error) => statuses.push([status, error?.code]));
    cache.attach(identity);
    expect(await cache.read("view-1")).toBeUndefined();
    expect(cache.status).toBe("failed");
    expect(cache.error?.code).toBe("STORAGE_FAILURE");
    expect(statuses).toEqual([
      ["opening", undefined],
      ["failed", "STORAGE_FAILURE"],
    ]);
    expect(reported.map((error) => error.code)).toEqual(["STORAGE_FAILURE"]);
  });

  test("a factory whose open fails is reported the same way", async () => {
    const broken = {
      open: () => {
        throw new DOMException("blocked by the browser's settings", "SecurityError");
      },
    } as unknown as IDBFactory;
    const cache = createIndexedDbQueryCache({ indexedDB: broken, onError: () => undefined });
    cache.attach(identity);
    await cache.read("x");
    expect(cache.status).toBe("failed");
    expect(cache.error).toMatchObject({ code: "STORAGE_FAILURE", message: expect.stringContaining("blocked by the browser") });
  });
});
