/**
 * Membership diffs evaluate shape predicates in JavaScript (`matchesWhere`)
 * against change-log images, while snapshots evaluate them in SQLite
 * (`whereToSql`) and read rows with `sql.exec`. If the two ever disagreed, a
 * client would keep a row the snapshot would not give it, or miss one: a
 * silent divergence. This property test writes random rows into real DO
 * SQLite, builds their images with the same SQL the capture triggers use,
 * and requires
 *
 * - the image of a row to equal the row as a snapshot reads it (every bit of
 *   every double, BLOBs, astral text),
 * - the value guard to refuse exactly the rows holding an integer beyond
 *   ±(2^53 − 1) (what the synced representation cannot carry),
 * - `matchesWhere` over the images to select the same rows as the SQL,
 * - a subset's limit, resolved to "up to the count-th row, ties included"
 *   (server-kit/subsets.ts), to select in both engines exactly the rows of
 *   SQLite's own `ORDER BY … NULLS FIRST/LAST … LIMIT` plus the ties of its
 *   last row, in every direction and NULL placement.
 *
 * Generators cover full-precision doubles (subnormals, DBL_MAX, 0.1 + 0.2),
 * integers around and beyond 2^53 and 2^63, text across the BMP/astral edge
 * (U+D7FF, U+E000, U+FFFF, emoji, U+10FFFF, lone surrogates in predicates),
 * and BLOBs.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { expect, test } from "vitest";
import { affinityOf, compareText, compileWhere, matchesWhere, whereToSql, type Where } from "../../server-kit/where.js";
import { parseRowImage, rowImageSql, syncedValue, valueRefusal, VALUE_OUT_OF_RANGE_MARKER } from "../../server-kit/values.js";
import { cutWhere, planLimit, readBoundary } from "../../server-kit/subsets.js";
import type { Env, Room } from "../fixtures/room/worker.js";

const COLUMNS = { a: "INTEGER", b: "TEXT", c: "REAL", d: "", e: "NUMERIC" } as const;
type Column = keyof typeof COLUMNS;
const NAMES = Object.keys(COLUMNS) as Column[];

const edgeDoubles = fc.constantFrom(
  0.30000000000000004,
  0.3,
  1718000000000.123,
  5e-324,
  2.2250738585072014e-308,
  1.7976931348623157e308,
  -1.7976931348623157e308,
  -0,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 63,
  -(2 ** 63),
  1e19,
  1e21,
  // SQLite's decimal parsing (literals, CAST, JSON) is one ulp off for these.
  -3.536552790332434e-287,
  4.522722599504544e263,
  -4.903154356169009e-302,
);
const double = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), edgeDoubles);
const smallNumber = fc.constantFrom(0, 1, -1, 2, 10, 1.5, -2.25, 1e3);
const edgeText = fc.constantFrom("", "a", "b", "B", "1", "10", "1.5", "01", "1e2", "0x10", " 1", "é", "z", "\uD7FF", "\uE000", "\uFFFF", "😀", "a😀", "\u{10FFFF}", "\u{10000}", "9007199254740993", "-9223372036854775808");
const text = fc.oneof(
  { arbitrary: edgeText, weight: 3 },
  { arbitrary: fc.string({ unit: fc.constantFrom("a", "b", "é", "\uD7FF", "\uE000", "\uFFFD", "\uFFFF", "😀", "\u{10FFFF}"), maxLength: 3 }), weight: 4 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 4 }), weight: 1 },
);
/** Lone surrogates only in predicates: stored text is UTF-8, so rows never hold them. */
const predicateText = fc.oneof(text, fc.string({ unit: "binary", maxLength: 3 }), fc.constantFrom("\uD800", "\uDBFF\uDFFF", "\uDFFF"));

/** A cell as written into SQLite: bound as is, a big integer through CAST, or a BLOB. */
type Cell = { bind: string | number | null | ArrayBuffer; cast?: "INTEGER" };
const bigInteger = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n)),
);
const cell: fc.Arbitrary<Cell> = fc.oneof(
  fc.constant<Cell>({ bind: null }),
  smallNumber.map((n): Cell => ({ bind: n })),
  double.map((n): Cell => ({ bind: n })),
  fc.maxSafeInteger().map((n): Cell => ({ bind: n })),
  bigInteger.map((n): Cell => ({ bind: n.toString(), cast: "INTEGER" })),
  text.map((s): Cell => ({ bind: s })),
  fc.uint8Array({ maxLength: 4 }).map((bytes): Cell => ({ bind: bytes.slice().buffer as ArrayBuffer })),
  fc.boolean().map((b): Cell => ({ bind: b ? 1 : 0 })),
);

const scalar = fc.oneof(fc.constantFrom(null), smallNumber, double, fc.maxSafeInteger(), predicateText, fc.boolean());
const column = fc.constantFrom<Column>(...NAMES);
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
const row = fc.record({ a: cell, b: cell, c: cell, d: cell, e: cell });

function room() {
  const namespace = (env as unknown as Env).ROOM;
  return namespace.get(namespace.idFromName("where-property"));
}

test("compareText orders by code point, as SQLite's BINARY collation does", () => {
  expect(compareText("\uFFFF", "😀")).toBeLessThan(0); // UTF-16 `<` says the opposite
  expect(compareText("😀", "\uE000")).toBeGreaterThan(0);
  expect(compareText("a😀", "a\uFFFF")).toBeGreaterThan(0);
  expect(compareText("\uD800", "\uE000")).toBeLessThan(0); // a lone surrogate is its own code point
  expect(compareText("\uD83D\uDE00", "\uD83D\uE000")).toBeGreaterThan(0);
  expect(compareText("ab", "abc")).toBeLessThan(0);
  expect(compareText("x", "x")).toBe(0);
});

test("matchesWhere (JS) over log images and whereToSql (SQLite) select the same rows; images equal snapshot reads", async () => {
  await runInDurableObject(room(), (_instance: Room, state) => {
    const sql = state.storage.sql;
    const definition = NAMES.map((name) => `${name} ${COLUMNS[name]}`).join(", ");
    sql.exec(`CREATE TABLE IF NOT EXISTS agreement (id INTEGER PRIMARY KEY, ${definition})`);
    sql.exec(`CREATE TABLE IF NOT EXISTS agreement_unguarded (id INTEGER PRIMARY KEY, ${definition})`);
    sql.exec(`DROP TRIGGER IF EXISTS agreement_guard`);
    // What the capture triggers do: build the post-image, which refuses unsafe values.
    sql.exec(`CREATE TRIGGER agreement_guard AFTER INSERT ON agreement BEGIN SELECT ${rowImageSql(["id", ...NAMES], "NEW", { refuse: valueRefusal("agreement") })}; END`);
    const columns = new Map(Object.entries(COLUMNS).map(([name, type]) => [name, affinityOf(type)]));
    columns.set("id", affinityOf("INTEGER"));
    const placeholders = NAMES.map(() => "?");
    const image = rowImageSql(["id", ...NAMES], "p");
    let refused = 0;
    let kept = 0;
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 10 }), predicate, (rows, where) => {
        sql.exec(`DELETE FROM agreement`);
        sql.exec(`DELETE FROM agreement_unguarded`);
        for (const [i, r] of rows.entries()) {
          const cells = NAMES.map((name) => r[name]);
          const values = cells.map((c) => c.bind);
          const slots = cells.map((c, index) => (c.cast ? `CAST(${placeholders[index]} AS INTEGER)` : placeholders[index]));
          sql.exec(`INSERT INTO agreement_unguarded (id, ${NAMES.join(", ")}) VALUES (?, ${slots.join(", ")})`, i, ...values);
          const unsafe = sql
            .exec<{ n: number }>(
              `SELECT count(*) AS n FROM agreement_unguarded WHERE id = ? AND (${NAMES.map((name) => `(typeof(${name}) = 'integer' AND (${name} > 9007199254740991 OR ${name} < -9007199254740991))`).join(" OR ")})`,
              i,
            )
            .one().n;
          let wasRefused = false;
          try {
            sql.exec(`INSERT INTO agreement (id, ${NAMES.join(", ")}) VALUES (?, ${slots.join(", ")})`, i, ...values);
          } catch (error) {
            expect((error as Error).message).toContain(VALUE_OUT_OF_RANGE_MARKER);
            wasRefused = true;
          }
          // Refused exactly when the stored row would hold an integer JavaScript cannot represent.
          expect(wasRefused).toBe(unsafe > 0);
          if (wasRefused) refused++;
          else kept++;
        }
        // Snapshot reads and log images of every row are the same JSON.
        const snapshot = sql.exec(`SELECT id, ${NAMES.join(", ")} FROM agreement ORDER BY id`).toArray();
        const images = sql
          .exec<{ doc: string }>(`SELECT ${image} AS doc FROM agreement AS p ORDER BY id`)
          .toArray()
          .map((r) => parseRowImage(r.doc));
        const asSnapshot = snapshot.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, syncedValue(v)])));
        expect(images.map((i) => JSON.stringify(i))).toEqual(asSnapshot.map((s) => JSON.stringify(s)));
        const compiled = compileWhere(where, columns);
        const { sql: clause, params } = whereToSql(compiled);
        const bySql = sql.exec<{ id: number }>(`SELECT id FROM agreement WHERE ${clause} ORDER BY id`, ...params).toArray().map((r) => r.id);
        const byJs = images.filter((i) => matchesWhere(compiled, i)).map((i) => i.id);
        expect(byJs).toEqual(bySql);
      }),
      { numRuns: 3000, seed: 20261201 },
    );
    // The generators reach both sides of the guard.
    expect(refused).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);
  });
});

test("an `in` list finds doubles SQLite's decimal parser misreads (the list travels as one JSON parameter)", async () => {
  await runInDurableObject(room(), (_instance: Room, state) => {
    const sql = state.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS doubles (id INTEGER PRIMARY KEY, c REAL)`);
    sql.exec(`DELETE FROM doubles`);
    const values = [-3.536552790332434e-287, 4.522722599504544e263, -4.903154356169009e-302, 5e-324, 1.7976931348623157e308, 0.30000000000000004, -0.5];
    values.forEach((value, id) => sql.exec(`INSERT INTO doubles (id, c) VALUES (?, ?)`, id, value));
    const columns = new Map([
      ["id", affinityOf("INTEGER")],
      ["c", affinityOf("REAL")],
    ]);
    const images = sql.exec<{ doc: string }>(`SELECT ${rowImageSql(["id", "c"], "p")} AS doc FROM doubles AS p ORDER BY id`).toArray().map((r) => parseRowImage(r.doc));
    for (const [id, value] of values.entries()) {
      const compiled = compileWhere({ c: { in: [value, 1] } }, columns);
      const { sql: clause, params } = whereToSql(compiled);
      const bySql = sql.exec<{ id: number }>(`SELECT id FROM doubles WHERE ${clause} ORDER BY id`, ...params).toArray().map((r) => r.id);
      expect(bySql).toEqual([id]);
      expect(images.filter((image) => matchesWhere(compiled, image)).map((image) => image.id)).toEqual([id]);
    }
  });
});

test("an unpaired surrogate in a predicate never equals U+FFFD in a row, in SQL (also through an `in` list) and in JavaScript", async () => {
  await runInDurableObject(room(), (_instance: Room, state) => {
    const sql = state.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS replacement (id INTEGER PRIMARY KEY, t TEXT)`);
    sql.exec(`DELETE FROM replacement`);
    sql.exec(`INSERT INTO replacement (id, t) VALUES (1, ?), (2, ?)`, "\uFFFD", "a\uFFFD");
    const columns = new Map([
      ["id", affinityOf("INTEGER")],
      ["t", affinityOf("TEXT")],
    ]);
    const images = sql.exec<{ doc: string }>(`SELECT ${rowImageSql(["id", "t"], "p")} AS doc FROM replacement AS p ORDER BY id`).toArray().map((r) => parseRowImage(r.doc));
    for (const where of [{ t: "\uD800" }, { t: { in: ["\uD800", "a\uDC00"] } }, { t: { lt: "\uD800" } }, { t: { gt: "a\uDBFF" } }] as Where[]) {
      const compiled = compileWhere(where, columns);
      const { sql: clause, params } = whereToSql(compiled);
      const bySql = sql.exec<{ id: number }>(`SELECT id FROM replacement WHERE ${clause} ORDER BY id`, ...params).toArray().map((r) => r.id);
      expect(images.filter((image) => matchesWhere(compiled, image)).map((image) => image.id)).toEqual(bySql);
    }
  });
});

/** Values a limit column may hold and cut on: NULLs, integers, reals (ties across both), text. BLOBs never cut. */
const orderedCell = fc.oneof(
  { arbitrary: fc.constant(null), weight: 2 },
  { arbitrary: fc.integer({ min: -3, max: 3 }), weight: 3 },
  { arbitrary: fc.constantFrom(-1.5, 0.5, 2.0, 2.5, -0, 1e-300, 5e-324, 1.7976931348623157e308), weight: 2 },
  { arbitrary: double, weight: 1 },
  { arbitrary: text, weight: 3 },
);

test("a limit's cut (up to the count-th row, ties included) selects in SQL and in JavaScript exactly SQLite's ORDER BY … NULLS FIRST/LAST … LIMIT prefix plus the ties of its last row", async () => {
  await runInDurableObject(room(), (_instance: Room, state) => {
    const sql = state.storage.sql;
    // No declared type: every value is stored as bound, so one column mixes storage classes.
    sql.exec(`CREATE TABLE IF NOT EXISTS ordered (id INTEGER PRIMARY KEY, x)`);
    const columns = new Map([
      ["id", affinityOf("INTEGER")],
      ["x", affinityOf("")],
    ]);
    const image = rowImageSql(["id", "x"], "p");
    const reached = new Set<string>();
    let cuts = 0;
    fc.assert(
      fc.property(fc.array(orderedCell, { minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 18 }), fc.boolean(), fc.boolean(), (values, count, desc, nullsLast) => {
        sql.exec(`DELETE FROM ordered`);
        values.forEach((value, id) => sql.exec(`INSERT INTO ordered (id, x) VALUES (?, ?)`, id, value));
        const limit = { count, column: "x", desc, nullsLast, lexical: true };
        // The room's reading: the boundary, then the predicate it resolves to.
        const plan = planLimit({ table: "ordered", where: { kind: "const", value: true } }, limit, columns);
        const where = cutWhere(undefined, limit, readBoundary(sql, plan));
        // An independent reading: SQLite's own ORDER BY … LIMIT, then the ties of its last row.
        const order = `${desc ? "DESC" : "ASC"} NULLS ${nullsLast ? "LAST" : "FIRST"}`;
        const prefix = sql.exec<{ id: number; x: SqlStorageValue }>(`SELECT id, x FROM ordered ORDER BY x ${order}, id LIMIT ?`, count).toArray();
        const expected = new Set(prefix.map((row) => row.id));
        if (prefix.length === count) {
          for (const row of sql.exec<{ id: number }>(`SELECT id FROM ordered WHERE x IS ?`, prefix[count - 1].x).toArray()) expected.add(row.id);
        } else {
          for (const id of values.keys()) expected.add(id);
        }
        const wanted = [...expected].sort((x, y) => x - y);
        const compiled = compileWhere(where, columns);
        const { sql: clause, params } = whereToSql(compiled);
        const bySql = sql.exec<{ id: number }>(`SELECT id FROM ordered WHERE ${clause} ORDER BY id`, ...params).toArray().map((row) => row.id);
        const images = sql
          .exec<{ doc: string }>(`SELECT ${image} AS doc FROM ordered AS p ORDER BY id`)
          .toArray()
          .map((row) => parseRowImage(row.doc));
        const byJs = images.filter((row) => matchesWhere(compiled, row)).map((row) => row.id as number);
        expect(bySql).toEqual(wanted);
        expect(byJs).toEqual(wanted);
        if (where !== true) {
          cuts++;
          reached.add(`${desc}/${nullsLast}/${prefix[count - 1]?.x === null ? "null" : typeof prefix[count - 1]?.x}`);
        }
      }),
      { numRuns: 2000, seed: 20261202 },
    );
    // Every direction × NULL placement cut on numbers, text and NULL boundaries.
    expect(cuts).toBeGreaterThan(500);
    for (const desc of [false, true]) {
      for (const nullsLast of [false, true]) {
        for (const kind of ["number", "string", ...(nullsLast ? [] : ["null"])]) expect(reached).toContain(`${desc}/${nullsLast}/${kind}`);
      }
    }
  });
});
