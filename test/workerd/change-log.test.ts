/**
 * The change log from inside the object: triggers on the room's own tables,
 * re-installation after a migration, and retention that never trims what a
 * connected subscriber has not been sent.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect, test } from "vitest";
import { installCaptureTriggers, installLogTables, readTableInfo } from "../../server-kit/change-log.js";
import { parseRowImage } from "../../server-kit/values.js";
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

test("REPLACE logs the rows it displaces, for INTEGER PRIMARY KEY, WITHOUT ROWID and a second UNIQUE column; IGNORE and UPSERT log no delete", async () => {
  await runInDurableObject(room("log-replace"), (_instance: Room, state) => {
    const sql = state.storage.sql;
    installLogTables(sql);
    sql.exec(`CREATE TABLE r_int (id INTEGER PRIMARY KEY, owner TEXT, tag TEXT UNIQUE)`);
    sql.exec(`CREATE TABLE r_norowid (id TEXT PRIMARY KEY, owner TEXT, tag TEXT, UNIQUE (owner, tag)) WITHOUT ROWID`);
    for (const [table, key] of [["r_int", "id"], ["r_norowid", "id"]] as const) installCaptureTriggers(sql, readTableInfo(sql, table, key)!);
    const ops = (table: string, from: number) =>
      sql
        .exec<LogRow>(`SELECT seq, "table", id, op, doc, prev FROM __cdc_log WHERE "table" = ? AND seq > ? ORDER BY seq`, table, from)
        .toArray()
        .map((row) => [row.op, row.id, row.prev && JSON.parse(row.prev).owner, row.doc && JSON.parse(row.doc).owner]);
    const mark = () => sql.exec<{ seq: number | null }>(`SELECT max(seq) AS seq FROM __cdc_log`).one().seq ?? 0;

    sql.exec(`INSERT INTO r_int (id, owner, tag) VALUES (1, 'a', 'x'), (2, 'a', 'y')`);
    let from = mark();
    sql.exec(`INSERT OR REPLACE INTO r_int (id, owner, tag) VALUES (1, 'b', 'y')`); // same rowid as 1, and takes 2's tag
    expect(ops("r_int", from)).toEqual([
      ["delete", "1", "a", null],
      ["delete", "2", "a", null],
      ["insert", "1", null, "b"],
    ]);
    from = mark();
    sql.exec(`INSERT OR IGNORE INTO r_int (id, owner, tag) VALUES (3, 'c', 'y')`);
    sql.exec(`INSERT INTO r_int (id, owner, tag) VALUES (1, 'c', 'z') ON CONFLICT(id) DO UPDATE SET owner = excluded.owner`);
    expect(ops("r_int", from)).toEqual([["update", "1", "b", "c"]]);

    sql.exec(`INSERT INTO r_norowid (id, owner, tag) VALUES ('p', 'a', 't'), ('q', 'b', 't')`);
    from = mark();
    sql.exec(`UPDATE OR REPLACE r_norowid SET owner = 'b' WHERE id = 'p'`); // collides with q on (owner, tag)
    expect(ops("r_norowid", from)).toEqual([
      ["delete", "q", "b", null],
      ["update", "p", "a", "b"],
    ]);
    // Notes left by statements that displaced nothing (IGNORE, UPSERT) are
    // cleared by the table's next write; they never turn into deletes.
    from = mark();
    sql.exec(`INSERT INTO r_int (id, owner, tag) VALUES (9, 'z', 'q')`);
    expect(ops("r_int", from)).toEqual([["insert", "9", null, "z"]]);
    expect(sql.exec(`SELECT count(*) AS n FROM __lunora_displaced`).one().n).toBe(0);
  });
});

test("a table of 100 columns with long names gets triggers within SQLite's statement-length limit", async () => {
  await runInDurableObject(room("log-hundred-columns"), (_instance: Room, state) => {
    const sql = state.storage.sql;
    installLogTables(sql);
    const names = Array.from({ length: 99 }, (_, i) => `a rather long column name, number ${i} "quoted" ${"x".repeat(20)}`);
    sql.exec(`CREATE TABLE hundred (id TEXT PRIMARY KEY UNIQUE, ${names.map((name) => `"${name.replaceAll('"', '""')}" REAL UNIQUE`).join(", ")})`);
    installCaptureTriggers(sql, readTableInfo(sql, "hundred", "id")!);
    sql.exec(`INSERT INTO hundred (id, "${names[98].replaceAll('"', '""')}") VALUES ('h', 0.1)`);
    // Bound, not a literal: SQLite's own parsing of the text "1e-300" is off by one ulp.
    sql.exec(`UPDATE hundred SET "${names[0].replaceAll('"', '""')}" = ? WHERE id = 'h'`, 1e-300);
    const doc = parseRowImage(sql.exec<{ doc: string }>(`SELECT doc FROM __cdc_log WHERE "table" = 'hundred' ORDER BY seq DESC LIMIT 1`).one().doc);
    expect(Object.keys(doc)).toEqual(["id", ...names]);
    expect(doc[names[0]]).toBe(1e-300);
    expect(doc[names[98]]).toBe(0.1);
  });
});
