/**
 * Membership diffs evaluate shape predicates in JavaScript (`matchesWhere`)
 * while snapshots evaluate them in SQLite (`whereToSql`). If the two ever
 * disagreed, a client would keep a row the snapshot would not give it, or
 * miss one: a silent divergence. This property test runs both on random rows
 * and predicates against real DO SQLite and requires the same answer.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { expect, test } from "vitest";
import { affinityOf, compileWhere, matchesWhere, whereToSql, type Where } from "../../server-kit/where.js";
import type { Env, Room } from "../fixtures/room/worker.js";

const COLUMNS = { a: "INTEGER", b: "TEXT", c: "REAL", d: "" } as const;
type Column = keyof typeof COLUMNS;

const scalar = fc.oneof(
  fc.constantFrom(null, 0, 1, -1, 2, 10, 1.5, -2.25, 1e3),
  fc.constantFrom("", "a", "b", "ab", "B", "1", "10", "2", "1.5", "01", "1e2", "0x10", " 1", "é", "z"),
  fc.boolean(),
);
const column = fc.constantFrom<Column>("a", "b", "c", "d");
const comparison: fc.Arbitrary<Where> = fc.oneof(
  fc.record({ column, value: scalar }).map(({ column, value }) => ({ [column]: value }) as Where),
  fc
    .record({ column, op: fc.constantFrom("eq", "ne", "gt", "gte", "lt", "lte"), value: scalar })
    .map(({ column, op, value }) => ({ [column]: { [op]: value } }) as Where),
  fc.record({ column, values: fc.array(scalar, { maxLength: 4 }) }).map(({ column, values }) => ({ [column]: { in: values } }) as Where),
);
const predicate: fc.Arbitrary<Where> = fc.letrec<{ where: Where }>((tie) => ({
  where: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    comparison,
    fc.constantFrom<Where>(true, false),
    fc.array(tie("where"), { minLength: 1, maxLength: 3 }).map((items) => ({ $and: items })),
    fc.array(tie("where"), { minLength: 1, maxLength: 3 }).map((items) => ({ $or: items })),
    tie("where").map((item) => ({ $not: item })),
  ),
})).where;
const row = fc.record({ a: scalar, b: scalar, c: scalar, d: scalar });

test("matchesWhere (JS) and whereToSql (SQLite) select the same rows", async () => {
  const namespace = (env as unknown as Env).ROOM;
  const stub = namespace.get(namespace.idFromName("where-property"));
  await runInDurableObject(stub, (_instance: Room, state) => {
    const sql = state.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS props (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, d)`);
    const columns = new Map(Object.entries(COLUMNS).map(([name, type]) => [name, affinityOf(type)]));
    columns.set("id", affinityOf("INTEGER"));
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 12 }), predicate, (rows, where) => {
        sql.exec(`DELETE FROM props`);
        for (const [i, r] of rows.entries()) {
          const bind = (value: unknown) => (typeof value === "boolean" ? (value ? 1 : 0) : (value as string | number | null));
          sql.exec(`INSERT INTO props (id, a, b, c, d) VALUES (?, ?, ?, ?, ?)`, i, bind(r.a), bind(r.b), bind(r.c), bind(r.d));
        }
        const compiled = compileWhere(where, columns);
        const { sql: clause, params } = whereToSql(compiled);
        const bySql = sql.exec<{ id: number }>(`SELECT id FROM props WHERE ${clause} ORDER BY id`, ...params).toArray().map((r) => r.id);
        // The same images the capture triggers write to the log.
        const images = sql
          .exec<{ doc: string }>(`SELECT json_object('id', id, 'a', a, 'b', b, 'c', c, 'd', d) AS doc FROM props ORDER BY id`)
          .toArray()
          .map((r) => JSON.parse(r.doc) as Record<string, unknown>);
        const byJs = images.filter((image) => matchesWhere(compiled, image)).map((image) => image.id);
        expect(byJs).toEqual(bySql);
      }),
      { numRuns: 2000, seed: 20261122 },
    );
  });
});
