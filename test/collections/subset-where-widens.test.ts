/**
 * The one property the compiler must never break: a pushed-down subset is
 * never NARROWER than the query. For random rows and random TanStack
 * expressions, every row TanStack DB's own evaluator accepts is accepted by
 * the room's JavaScript evaluator of the compiled subset (server-kit/where.ts,
 * whose agreement with SQLite is property-tested in workerd).
 */
import { IR, and, compileSingleRowExpression, eq, gt, gte, inArray, isNull, isUndefined, like, lt, lte, not, or, toBooleanPredicate, upper } from "@tanstack/db";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileSubset } from "../../src/collections/subset-where.js";
import type { Where } from "../../src/protocol/index.js";

// The room's evaluator, loaded by path: server-kit is typechecked against the
// Workers types (its own tsconfig), which this Node project does not load.
type RoomWhere = { kind: string };
const roomWhereModule = "../../server-kit/where.js";
const { compileWhere: compileRoomWhere, matchesWhere } = (await import(/* @vite-ignore */ roomWhereModule)) as {
  compileWhere(where: Where, columns: ReadonlyMap<string, string>): RoomWhere;
  matchesWhere(where: RoomWhere, row: Record<string, unknown>): boolean;
};

const columns = new Map<string, string>([
  ["id", "TEXT"],
  ["a", "INTEGER"],
  ["b", "REAL"],
  ["c", "TEXT"],
]);

const text = fc.constantFrom("", "a", "ab", "b", "t1", "t12", "Z", "x y");
const row = fc.record({
  id: fc.string({ minLength: 1, maxLength: 4 }),
  a: fc.option(fc.integer({ min: -3, max: 3 }), { nil: null }),
  b: fc.option(fc.constantFrom(-1.5, 0, 0.5, 2), { nil: null }),
  c: fc.option(text, { nil: null }),
});

// Constants of the column's own kind (see the assumption in subset-where.ts),
// plus booleans and NULL, which every column may meet.
const number = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(-1.5, 0.5, 2));
const odd = fc.oneof(fc.boolean(), fc.constant(null));
const columnAndValue = fc.oneof(
  fc.tuple(fc.constantFrom("a", "b"), fc.oneof(number, odd)),
  fc.tuple(fc.constant("c"), fc.oneof(text, odd)),
);
const columnAndValues = fc.oneof(
  fc.tuple(fc.constantFrom("a", "b"), fc.array(fc.oneof(number, odd), { maxLength: 4 })),
  fc.tuple(fc.constant("c"), fc.array(fc.oneof(text, odd), { maxLength: 4 })),
);
const column = fc.constantFrom("a", "b", "c");
const ref = (name: string) => new IR.PropRef([name]);

type Expr = IR.BasicExpression<boolean>;
const comparison = fc.tuple(fc.constantFrom(eq, gt, gte, lt, lte), columnAndValue, fc.boolean()).map(([op, [name, v], flip]) =>
  (flip ? op(new IR.Value(v) as never, ref(name) as never) : op(ref(name) as never, new IR.Value(v) as never)) as Expr,
);
const leaf: fc.Arbitrary<Expr> = fc.oneof(
  comparison,
  columnAndValues.map(([name, items]) => inArray(ref(name) as never, items) as Expr),
  column.map((name) => isNull(ref(name) as never) as Expr),
  column.map((name) => isUndefined(ref(name) as never) as Expr),
  // Operators the room lacks: they must widen.
  fc.tuple(fc.constantFrom("c"), fc.constantFrom("t%", "%b", "_")).map(([name, pattern]) => like(ref(name) as never, pattern) as Expr),
  text.map((v) => eq(upper(ref("c") as never) as never, v as never) as Expr),
  fc.constant(eq(new IR.PropRef(["meta", "x"]) as never, 1 as never) as Expr),
);
const expression: fc.Arbitrary<Expr> = fc.letrec<{ node: Expr }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.array(tie("node"), { minLength: 1, maxLength: 3 }).map((items) => (items.length === 1 ? items[0]! : (and as any)(...items)) as Expr),
    fc.array(tie("node"), { minLength: 1, maxLength: 3 }).map((items) => (items.length === 1 ? items[0]! : (or as any)(...items)) as Expr),
    tie("node").map((item) => not(item as never) as Expr),
  ),
})).node;

describe("compileSubset never narrows", () => {
  it("every row the query accepts is in the compiled subset", () => {
    fc.assert(
      fc.property(expression, fc.array(row, { maxLength: 12 }), (expr, rows) => {
        const subset = compileSubset({ where: expr as never });
        const where = compileRoomWhere((subset.where ?? true) as Where, columns);
        const query = compileSingleRowExpression(expr as never);
        for (const candidate of rows) {
          if (!toBooleanPredicate(query(candidate as never))) continue;
          expect(matchesWhere(where, candidate), `${JSON.stringify(candidate)} accepted by the query, not by ${JSON.stringify(subset.where)}`).toBe(true);
        }
      }),
      { numRuns: 5_000 },
    );
  });
});
