/**
 * The change log from inside the object: triggers on the room's own tables,
 * re-installation after a migration, and retention that never trims what a
 * connected subscriber has not been sent.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect, test } from "vitest";
import type { Env, Room } from "../fixtures/room/worker.js";

function room(name: string) {
  const namespace = (env as unknown as Env).ROOM;
  return namespace.get(namespace.idFromName(name));
}

type LogRow = { seq: number; table: string; id: string; op: string; doc: string | null; prev: string | null };

test("raw writes of the room's own code are logged with pre- and post-images, in the same transaction", async () => {
  await runInDurableObject(room("log-images"), (instance: Room, state) => {
    const sql = state.storage.sql;
    instance.lunora.ensureReady();
    sql.exec(`INSERT INTO items (id, listId, title) VALUES ('a', 'L', 'one')`);
    sql.exec(`UPDATE items SET title = 'two' WHERE id = 'a'`);
    expect(() =>
      state.storage.transactionSync(() => {
        sql.exec(`UPDATE items SET title = 'three' WHERE id = 'a'`);
        throw new Error("rolled back");
      }),
    ).toThrow("rolled back");
    sql.exec(`DELETE FROM items WHERE id = 'a'`);
    const log = sql.exec<LogRow>(`SELECT seq, "table", id, op, doc, prev FROM __cdc_log ORDER BY seq`).toArray();
    expect(log.map((row) => [row.op, row.doc && JSON.parse(row.doc).title, row.prev && JSON.parse(row.prev).title])).toEqual([
      ["insert", "one", null],
      ["update", "two", "one"],
      ["delete", null, "two"],
    ]);
    expect(log[1].seq).toBeGreaterThan(log[0].seq);
    expect(log[2].seq).toBeGreaterThan(log[1].seq);
  });
});

test("after a migration adds a column, refreshSchema() re-installs the triggers so the column syncs", async () => {
  await runInDurableObject(room("log-migration"), (instance: Room, state) => {
    const sql = state.storage.sql;
    instance.lunora.ensureReady();
    sql.exec(`ALTER TABLE notes ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0`);
    instance.lunora.refreshSchema();
    sql.exec(`INSERT INTO notes (id, ownerId, body, pinned) VALUES ('n', 'u', 'b', 1)`);
    const doc = sql.exec<{ doc: string }>(`SELECT doc FROM __cdc_log WHERE id = 'n'`).one().doc;
    expect(JSON.parse(doc)).toEqual({ id: "n", ownerId: "u", body: "b", pinned: 1 });
  });
});

test("a sweep trims by retention but never past what was flushed to subscribers", async () => {
  await runInDurableObject(room("log-trim"), (instance: Room, state) => {
    const sql = state.storage.sql;
    instance.lunora.ensureReady();
    for (let i = 0; i < 800; i++) sql.exec(`INSERT INTO items (id, listId, title) VALUES (?, 'L', 't')`, `k${i}`);
    instance.lunora.flush();
    const flushed = instance.lunora.cursorSeq;
    // Not flushed yet: these must survive any sweep.
    for (let i = 0; i < 700; i++) sql.exec(`UPDATE items SET title = 'u' WHERE id = ?`, `k${i}`);
    const trimmedThrough = instance.lunora.sweep();
    const oldest = sql.exec<{ seq: number }>(`SELECT min(seq) AS seq FROM __cdc_log`).one().seq;
    const max = sql.exec<{ seq: number }>(`SELECT max(seq) AS seq FROM __cdc_log`).one().seq;
    // Fixture retention keeps 500 rows, but nothing after `flushed` may go.
    expect(trimmedThrough).toBeLessThanOrEqual(flushed);
    expect(trimmedThrough).toBeGreaterThan(0);
    expect(oldest).toBe(trimmedThrough + 1);
    expect(max - trimmedThrough).toBeGreaterThanOrEqual(700);
  });
});
