import * as v from "valibot";
import { nameSchema } from "./common.js";

/** Largest `limit.count` a subset may ask for; a client wanting more loads without a limit (a wider load). */
export const MAX_SUBSET_LIMIT = 10_000;

/** Largest subset (its JSON, in characters). It is stored with the socket, whose attachment is capped at 16 KiB. */
export const MAX_SUBSET_CHARS = 4 * 1024;

/**
 * The ordered cut of a subset: "the first `count` rows by `column`". The
 * room turns it, once, into a predicate (see {@link subsetSchema}).
 *
 * `desc` and `nullsLast` follow TanStack DB's compare options (default:
 * ascending, NULLs first). `lexical` says the client compares text by code
 * unit (`stringSort: "lexical"`); under locale order a text boundary cannot
 * be expressed as a predicate, and the room then loads without a cut.
 * `after` (a {@link Where}) restricts the rows the boundary is counted over —
 * a "load more" after a cursor — so the cut always moves past the cursor.
 */
export const subsetLimitSchema = /* @__PURE__ */ v.strictObject({
  count: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.number(), /* @__PURE__ */ v.integer(), /* @__PURE__ */ v.minValue(1), /* @__PURE__ */ v.maxValue(MAX_SUBSET_LIMIT)),
  column: nameSchema,
  desc: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.boolean()),
  nullsLast: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.boolean()),
  lexical: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.boolean()),
  after: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()),
});
export type SubsetLimit = v.InferOutput<typeof subsetLimitSchema>;

/**
 * A subset of a shape, for on-demand (query-driven) sync: the subscription
 * delivers only the shape's rows that match `where` — a {@link Where} over
 * the columns the shape projects, ANDed by the room with the shape's own
 * `where` and the table's `read` rule — and keeps exactly that set live.
 *
 * With `limit`, the room reads the `count`-th matching row in the requested
 * order at the subscribe's cut, and the subset becomes `where` AND "`column`
 * up to that row's value, ties included" (a served prefix, as TanStack DB
 * defines it). The resolved predicate is reported in the reset poke
 * (`subsets`), and the client resumes with it, so a subset means the same
 * rows across reconnects, hibernation and restarts. Columns the shape does
 * not project are refused (`INVALID_ARGS`): filtering or sorting on a hidden
 * column would reveal it through which rows arrive.
 */
export const subsetSchema = /* @__PURE__ */ v.strictObject({
  where: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()),
  limit: /* @__PURE__ */ v.optional(subsetLimitSchema),
});
export type Subset = v.InferOutput<typeof subsetSchema>;

/**
 * In a poke that resets a limited subset: the predicate the room resolved it
 * to. The client sends `subset: { where }` with it when it resumes.
 */
export const resolvedSubsetSchema = /* @__PURE__ */ v.strictObject({
  sub: nameSchema,
  where: /* @__PURE__ */ v.unknown(),
});
export type ResolvedSubset = v.InferOutput<typeof resolvedSubsetSchema>;
