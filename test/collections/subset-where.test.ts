import { IR, and, eq, gt, gte, inArray, isNull, isUndefined, like, lt, lte, not, or, upper } from "@tanstack/db";
import type { LoadSubsetOptions } from "@tanstack/db";
import { describe, expect, it } from "vitest";
import { compileSubset, subsetKey } from "../../src/collections/subset-where.js";
import { MAX_SUBSET_CHARS, MAX_SUBSET_LIMIT } from "../../src/protocol/index.js";

// Real TanStack expression shapes: the builders over PropRef / Value, as the
// collection hands them to loadSubset (the source alias already stripped).
const col = (name: string) => new IR.PropRef([name]);
const val = (value: unknown) => new IR.Value(value);
const where = (expression: unknown) => compileSubset({ where: expression as LoadSubsetOptions["where"] });
const orderBy = (column: string | IR.BasicExpression, options: Partial<IR.OrderByClause["compareOptions"]> = {}): IR.OrderBy => [
  {
    expression: typeof column === "string" ? col(column) : column,
    compareOptions: { direction: "asc", nulls: "first", stringSort: "locale", ...options } as IR.OrderByClause["compareOptions"],
  },
];

describe("subset where: pushed-down operators", () => {
  it("eq, gt, gte, lt, lte with the column on the left", () => {
    expect(where(eq(col("a"), 1))).toEqual({ where: { a: { eq: 1 } } });
    expect(where(gt(col("a"), 1))).toEqual({ where: { a: { gt: 1 } } });
    expect(where(gte(col("c"), "x"))).toEqual({ where: { c: { gte: "x" } } });
    expect(where(lt(col("b"), 1.5))).toEqual({ where: { b: { lt: 1.5 } } });
    expect(where(lte(col("a"), -3))).toEqual({ where: { a: { lte: -3 } } });
    expect(where(eq(col("flag"), true))).toEqual({ where: { flag: { eq: true } } });
  });

  it("flips a comparison whose column is on the right", () => {
    expect(where(eq(val(5), col("a")))).toEqual({ where: { a: { eq: 5 } } });
    expect(where(gt(val(5), col("a")))).toEqual({ where: { a: { lt: 5 } } });
    expect(where(gte(val(5), col("a")))).toEqual({ where: { a: { lte: 5 } } });
    expect(where(lt(val(5), col("a")))).toEqual({ where: { a: { gt: 5 } } });
    expect(where(lte(val(5), col("a")))).toEqual({ where: { a: { gte: 5 } } });
  });

  it("inArray, leaving NULL items out (they never match)", () => {
    expect(where(inArray(col("a"), [1, 2, null]))).toEqual({ where: { a: { in: [1, 2] } } });
    expect(where(inArray(col("a"), []))).toEqual({ where: false });
  });

  it("and, or, not, isNull, isUndefined", () => {
    expect(where(and(eq(col("a"), 1), or(isNull(col("c")), gt(col("b"), 2))))).toEqual({
      where: { $and: [{ a: { eq: 1 } }, { $or: [{ c: { eq: null } }, { b: { gt: 2 } }] }] },
    });
    expect(where(not(eq(col("a"), 1)))).toEqual({ where: { $not: { a: { eq: 1 } } } });
    expect(where(not(isNull(col("c"))))).toEqual({ where: { $not: { c: { eq: null } } } });
    // A synced row carries every projected column: isUndefined is never true.
    expect(where(isUndefined(col("c")))).toEqual({ where: false });
    expect(where(or(isNull(col("c")), isUndefined(col("c"))))).toEqual({ where: { $or: [{ c: { eq: null } }, false] } });
  });

  it("keeps a column named __proto__ or constructor as a plain key", () => {
    const compiled = where(and(eq(col("__proto__"), 1), eq(col("constructor"), 2)));
    expect(JSON.stringify(compiled)).toBe('{"where":{"$and":[{"__proto__":{"eq":1}},{"constructor":{"eq":2}}]}}');
    expect(Object.getPrototypeOf({}).eq).toBeUndefined();
  });
});

describe("subset where: fallbacks widen, never narrow", () => {
  it("an unsupported operator at the top loads the whole shape", () => {
    expect(where(like(col("c"), "t1%"))).toEqual({});
    expect(where(eq(upper(col("c")), "X"))).toEqual({});
  });

  it("a function named like an Object.prototype member is unsupported, not a comparison", () => {
    for (const name of ["toString", "constructor", "hasOwnProperty", "__proto__"]) {
      expect(where(new IR.Func(name, [col("a"), val(1)]))).toEqual({});
    }
  });

  it("drops an unsupported conjunct of an and", () => {
    expect(where(and(eq(col("grp"), "x"), like(col("c"), "t%")))).toEqual({ where: { grp: { eq: "x" } } });
  });

  it("an or with an unsupported item is unsupported", () => {
    expect(where(or(eq(col("grp"), "x"), like(col("c"), "t%")))).toEqual({});
    expect(where(and(eq(col("a"), 1), or(eq(col("grp"), "x"), like(col("c"), "t%"))))).toEqual({ where: { a: { eq: 1 } } });
  });

  it("not of something unsupported, or of something widened, is unsupported", () => {
    expect(where(not(like(col("c"), "t%")))).toEqual({});
    // not(a=1 AND like) widened to not(a=1) would drop rows with a=1 that fail the like.
    expect(where(not(and(eq(col("a"), 1), like(col("c"), "t%"))))).toEqual({});
  });

  it("a comparison with a boolean is pushed down wider (SQLite stores 0/1) and never negated", () => {
    expect(where(eq(col("flag"), true))).toEqual({ where: { flag: { eq: true } } });
    // TanStack DB finds a synced 1 unequal to true, so not(flag = true) holds for it; the room's NOT(flag = 1) would not.
    expect(where(not(eq(col("flag"), true)))).toEqual({});
    expect(where(not(inArray(col("flag"), [false, 2])))).toEqual({});
    expect(compileSubset({ where: eq(col("flag"), true), orderBy: orderBy("a"), limit: 2 })).toEqual({ where: { flag: { eq: true } } });
  });

  it("nested paths, comparisons with NULL, and values the room cannot compare are unsupported", () => {
    expect(where(eq(new IR.PropRef(["meta", "x"]), 1))).toEqual({});
    expect(where(eq(col("a"), null))).toEqual({});
    expect(where(gt(col("at"), new Date(0)))).toEqual({});
    expect(where(eq(col("a"), 10n))).toEqual({});
    expect(where(eq(col("a"), Number.NaN))).toEqual({});
    expect(where(eq(col("a"), new Uint8Array([1])))).toEqual({});
    expect(where(gt(col("a"), true))).toEqual({});
    expect(where(inArray(col("a"), [1, { x: 1 }]))).toEqual({});
    expect(where(eq(col("$and"), 1))).toEqual({});
  });
});

describe("subset limit", () => {
  it("turns orderBy + limit into an ordered cut on the leading column", () => {
    expect(compileSubset({ where: eq(col("grp"), "x"), orderBy: orderBy("a", { direction: "desc", nulls: "last" }), limit: 3 })).toEqual({
      where: { grp: { eq: "x" } },
      limit: { count: 3, column: "a", desc: true, nullsLast: true },
    });
    expect(compileSubset({ orderBy: orderBy("c", { stringSort: "lexical" }), limit: 2, offset: 5 })).toEqual({
      limit: { count: 7, column: "c", lexical: true },
    });
  });

  it("drops the limit when the where was widened, the order is not a column, or the count is too large", () => {
    expect(compileSubset({ where: and(eq(col("grp"), "x"), like(col("c"), "t%")), orderBy: orderBy("a"), limit: 3 })).toEqual({
      where: { grp: { eq: "x" } },
    });
    expect(compileSubset({ orderBy: orderBy(upper(col("c")) as IR.BasicExpression), limit: 3 })).toEqual({});
    expect(compileSubset({ orderBy: orderBy(new IR.PropRef(["m", "x"])), limit: 3 })).toEqual({});
    expect(compileSubset({ orderBy: orderBy("a"), limit: MAX_SUBSET_LIMIT + 1 })).toEqual({});
    expect(compileSubset({ orderBy: orderBy("a"), limit: MAX_SUBSET_LIMIT })).toEqual({ limit: { count: MAX_SUBSET_LIMIT, column: "a" } });
  });

  it("combines a cursor: where AND (current OR from), counted after `from`", () => {
    const cursor = { whereFrom: gt(col("a"), 7), whereCurrent: eq(col("a"), 7) };
    expect(compileSubset({ where: eq(col("grp"), "x"), orderBy: orderBy("a"), limit: 2, cursor })).toEqual({
      where: { $and: [{ grp: { eq: "x" } }, { $or: [{ a: { eq: 7 } }, { a: { gt: 7 } }] }] },
      limit: { count: 2, column: "a", after: { a: { gt: 7 } } },
    });
  });

  it("drops cursor and limit when a cursor expression cannot be compiled (a Date boundary)", () => {
    const at = new Date(0);
    const cursor = { whereFrom: gt(col("at"), at), whereCurrent: and(gte(col("at"), at), lt(col("at"), new Date(1))) };
    expect(compileSubset({ where: eq(col("grp"), "x"), orderBy: orderBy("at"), limit: 2, cursor })).toEqual({ where: { grp: { eq: "x" } } });
  });

  it("widens a subset the room would refuse for its size", () => {
    const many = Array.from({ length: 400 }, (_, i) => eq(col("c"), `value-${i}`));
    expect(compileSubset({ where: or(...(many as [never, never])), orderBy: orderBy("a"), limit: 3 })).toEqual({});
    let deep: unknown = eq(col("a"), 1);
    for (let i = 0; i < 20; i++) deep = and(eq(col("b"), i), or(deep as never, eq(col("c"), `v${i}`)));
    expect(compileSubset({ where: deep as never, orderBy: orderBy("a"), limit: 3 })).toEqual({});
    const long = compileSubset({ where: inArray(col("c"), Array.from({ length: 20 }, (_, i) => `v${i}`)) });
    expect(JSON.stringify(long).length).toBeLessThanOrEqual(MAX_SUBSET_CHARS);
    expect(long.where).toBeDefined();
  });
});

describe("subsetKey", () => {
  it("is the same for the same subset whatever the key order", () => {
    expect(subsetKey({ where: { a: { eq: 1 } }, limit: { count: 2, column: "a", desc: true } })).toBe(
      subsetKey({ limit: { desc: true, column: "a", count: 2 }, where: { a: { eq: 1 } } }),
    );
    expect(subsetKey({ where: { a: { eq: 1 } } })).not.toBe(subsetKey({ where: { a: { eq: 2 } } }));
  });
});
