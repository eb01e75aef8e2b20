/**
 * Column patches (protocol 4, "Ops"): the op a coalesced stretch of the log
 * sends for a row that was and stays in a subscription brings the row to its
 * final state from ANY point of the stretch — the property that lets a
 * resume patch rows a client holds at a later point (subsets of one
 * collection at different cursors share rows). Property test over the
 * room's own coalesceLog and membershipOp.
 */
import fc from "fast-check";
import { expect, test } from "vitest";
import { coalesceLog, type LogEntry } from "../../server-kit/change-log.js";
import { membershipOp, type ResolvedSubscription } from "../../server-kit/subscriptions.js";
import { compileWhere, type Affinity } from "../../server-kit/where.js";

const COLUMNS = ["id", "a", "b", "c", "hidden"];
const affinities = new Map<string, Affinity>(COLUMNS.map((column) => [column, "TEXT"]));
/** Projects every column but `hidden`; the predicate admits every row. */
const sub: ResolvedSubscription = {
  id: "s",
  table: "t",
  key: "id",
  columns: ["id", "a", "b", "c"],
  where: compileWhere(true, affinities),
  projected: affinities,
  group: "g",
  groupId: "g",
};

type Row = Record<string, unknown>;
const value = fc.constantFrom<unknown>("x", "y", null, 1, { $blob: "AB" }, { $blob: "CD" });
const rowArb = fc.record({ a: value, b: value, c: value, hidden: value });
/** A step: an update of some columns, or a delete followed by a re-insert. */
const stepArb = fc.oneof(
  fc.record({ kind: fc.constant("update" as const), set: fc.dictionary(fc.constantFrom("a", "b", "c", "hidden"), value, { maxKeys: 4 }) }),
  fc.record({ kind: fc.constant("reinsert" as const), row: rowArb }),
);

const project = (row: Row) => Object.fromEntries(sub.columns.map((column) => [column, row[column] ?? null]));

test("from every point of a stretch, the coalesced op of a row that stays in the shape yields its final projected state", () => {
  fc.assert(
    fc.property(rowArb, fc.array(stepArb, { minLength: 1, maxLength: 8 }), (start, steps) => {
      const states: Row[] = [{ id: "k", ...start }];
      const entries: LogEntry[] = [];
      let seq = 0;
      for (const step of steps) {
        const prev = states.at(-1)!;
        if (step.kind === "update") {
          const doc = { ...prev, ...step.set };
          entries.push({ seq: ++seq, table: "t", op: "update", doc, prev });
          states.push(doc);
        } else {
          const doc = { id: "k", ...step.row };
          entries.push({ seq: ++seq, table: "t", op: "delete", doc: null, prev });
          entries.push({ seq: ++seq, table: "t", op: "insert", doc, prev: null });
          states.push(doc);
        }
      }
      const change = coalesceLog(entries, new Map([["t", "id"]]))!.get("t\u0000string\u0000k")!;
      const op = membershipOp(sub, change);
      const final = project(states.at(-1)!);
      for (const state of states) {
        const held = project(state);
        let result: Row = held;
        if (op !== null) {
          expect(op[0]).not.toBe("d");
          const item = JSON.parse(op[1]) as Row;
          expect(item.id).toBe("k");
          result = op[0] === "p" ? item : { ...held, ...item };
          // A patch never carries a column outside the projection, nor every column (that is a put).
          if (op[0] === "u") expect(Object.keys(item).length).toBeLessThan(sub.columns.length);
          for (const column of Object.keys(item)) expect(sub.columns).toContain(column);
        }
        expect(result).toEqual(final);
      }
    }),
    { numRuns: 2_000 },
  );
});
