/**
 * The IndexedDB plumbing the query cache and the outbox share
 * (src/cache/indexeddb.ts), over a factory without IndexedDB globals.
 */
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, test } from "vitest";
import { indexedDbFactory, openDatabase, requestResult, transactionDone } from "../../src/cache/indexeddb.js";

const openStore = (factory: IDBFactory, onGone = () => {}) =>
  openDatabase(factory, "helpers", 1, (db) => db.createObjectStore("entries"), onGone);

describe("IndexedDB helpers", () => {
  test("a transaction whose request fails rejects with that request's error, not with null", async () => {
    const db = await openStore(new IDBFactory());
    const first = db.transaction("entries", "readwrite");
    first.objectStore("entries").add("v", "k");
    await transactionDone(first);

    const second = db.transaction("entries", "readwrite");
    const done = transactionDone(second);
    second.objectStore("entries").add("again", "k"); // the key exists: ConstraintError
    await expect(done).rejects.toMatchObject({ name: "ConstraintError" });
    db.close();
  });

  test("requests resolve with their result; a version change elsewhere closes the connection and reports it gone", async () => {
    const factory = new IDBFactory();
    let gone = 0;
    const db = await openStore(factory, () => gone++);
    const tx = db.transaction("entries", "readwrite");
    tx.objectStore("entries").put("v", "k");
    await transactionDone(tx);
    expect(await requestResult(db.transaction("entries", "readonly").objectStore("entries").get("k"))).toBe("v");

    const upgraded = await openDatabase(factory, "helpers", 2, () => {}, () => {});
    expect(gone).toBe(1);
    upgraded.close();
  });

  test("without a factory or a global indexedDB: STORAGE_FAILURE naming the way out", () => {
    expect(() => indexedDbFactory(undefined, "use createInMemoryPersistence()")).toThrow(
      expect.objectContaining({ code: "STORAGE_FAILURE", message: expect.stringContaining("createInMemoryPersistence") }),
    );
  });
});
