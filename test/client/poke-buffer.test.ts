import { describe, expect, it } from "vitest";
import { PokeBuffer } from "../../src/client/poke-buffer.js";
import { LunoraError, type RowOp } from "../../src/protocol/index.js";

const op = (sub: string, id: string): RowOp => ({ op: "put", sub, key: id, row: { id } });
const cursor = { seq: 1, epoch: "e" };

describe("PokeBuffer", () => {
  it("groups ops per subscription in wire order and completes at pokeEnd", () => {
    const buffer = new PokeBuffer();
    expect(buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a", "b"], resets: ["b"] })).toEqual({ kind: "pending" });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "1"), op("b", "2")] }, 10);
    buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "3")] }, 10);
    const step = buffer.end({ type: "pokeEnd", pokeId: "p", cursor });
    expect(step.kind).toBe("complete");
    if (step.kind !== "complete") return;
    expect(step.poke.opsBySub.get("a")).toEqual([op("a", "1"), op("a", "3")]);
    expect(step.poke.opsBySub.get("b")).toEqual([op("b", "2")]);
    expect([...step.poke.resets]).toEqual(["b"]);
    expect(buffer.isOpen).toBe(false);
  });

  it("an interleaved pokeStart drops both pokes and their remaining frames are skipped quietly", () => {
    const buffer = new PokeBuffer();
    buffer.start({ type: "pokeStart", pokeId: "p1", subs: ["a"] });
    const step = buffer.start({ type: "pokeStart", pokeId: "p2", subs: ["b"] });
    expect(step).toEqual({ kind: "dropped", subs: ["a", "b"], error: expect.any(LunoraError) });
    expect(buffer.part({ type: "pokePart", pokeId: "p1", ops: [op("a", "1")] }, 1)).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p2", cursor })).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p1", cursor })).toEqual({ kind: "ignored" });
    // A later poke is handled normally.
    buffer.start({ type: "pokeStart", pokeId: "p3", subs: ["a"] });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p3", cursor }).kind).toBe("complete");
  });

  it("the bounds count every part of a poke", () => {
    const buffer = new PokeBuffer({ maxChars: 100, maxOps: 1_000 });
    buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a"] });
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "1")] }, 60).kind).toBe("pending");
    const step = buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "2")] }, 60);
    expect(step.kind).toBe("dropped");
    if (step.kind === "dropped") expect(step.error.code).toBe("QUOTA_EXCEEDED");
  });

  it("carries the predicates a poke resolved its limited subsets to", () => {
    const buffer = new PokeBuffer();
    const where = { $and: [{ grp: { eq: "x" } }, { a: { lte: 7 } }] };
    buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a", "b"], resets: ["a"], subsets: [{ sub: "a", where }] });
    const step = buffer.end({ type: "pokeEnd", pokeId: "p", cursor });
    expect(step.kind).toBe("complete");
    if (step.kind !== "complete") return;
    expect(step.poke.resolved.get("a")).toEqual(where);
    expect(step.poke.resolved.has("b")).toBe(false);
  });

  it("a resolved predicate for a subscription the poke does not reset, twice, or not a predicate, drops the poke", () => {
    for (const subsets of [
      [{ sub: "b", where: true }],
      [{ sub: "c", where: true }],
      [{ sub: "a", where: true }, { sub: "a", where: false }],
      [{ sub: "a", where: [1] }],
      [{ sub: "a", where: null }],
    ]) {
      const buffer = new PokeBuffer();
      const step = buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a", "b"], resets: ["a"], subsets });
      expect(step).toMatchObject({ kind: "dropped", error: { code: "PROTOCOL_ERROR" } });
      expect(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).toEqual({ kind: "ignored" });
    }
  });
});
