/**
 * The predicate language, shared by the room's rules and the client's
 * on-demand subsets.
 *
 * It is data, not SQL, because the room needs it twice: compiled to a
 * parameterized `WHERE` for snapshots, and evaluated in JavaScript against
 * change-log images to compute membership diffs without re-running queries.
 * Both evaluations follow SQLite's rules (see `server-kit/where.ts`).
 *
 * ```ts
 * { channelId: "general" }                       // channelId = ?
 * { authorId: { in: ["u1", "u2"] }, deleted: 0 } // AND of both
 * { $or: [{ public: 1 }, { ownerId: userId }] }
 * { deletedAt: null }                            // deletedAt IS NULL
 * true                                            // every row
 * false                                           // no row: a read rule returning false is FORBIDDEN
 * ```
 */
export type Where = boolean | WhereObject;

export type WhereScalar = string | number | boolean | null;

export interface WhereCondition {
  /** `{ eq: null }` is `IS NULL`. */
  eq?: WhereScalar;
  /** Null-safe: `{ ne: "x" }` matches NULL; `{ ne: null }` is `IS NOT NULL`. */
  ne?: WhereScalar;
  gt?: string | number;
  gte?: string | number;
  lt?: string | number;
  lte?: string | number;
  /** NULL never matches, as in SQL. One bound parameter whatever the length. */
  in?: readonly WhereScalar[];
}

export type WhereObject = {
  $and?: readonly Where[];
  $or?: readonly Where[];
  $not?: Where;
} & { [column: string]: WhereScalar | WhereCondition | readonly Where[] | Where | undefined };
